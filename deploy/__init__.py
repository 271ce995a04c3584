"""flasksample: the package behind the Fabric tasks in fabfile.py.

Pure builders (settings in, shell lines and file contents out) live in the submodules;
only `deploy.runner` and the task layer talk to servers.
"""
