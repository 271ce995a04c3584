"""Task bodies behind fabfile.py: setup, deploy/rollback, secrets — one module per `fab` task group."""
