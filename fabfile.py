"""The kit's own checkout: `fab` here uses the tasks installed as `flasksample` (deploy/fabfile.py)."""
from deploy.fabfile import ns  # noqa: F401
