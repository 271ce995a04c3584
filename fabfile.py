"""flasksample's tasks: `fab --list`."""
from invoke import Collection

from deploy.sandbox.tasks import sandbox as sandbox_ns

ns = Collection()
ns.add_collection(sandbox_ns)
