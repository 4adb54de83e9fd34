"""Task decorators: ``@task.hf_job`` (:mod:`.hf_job`)."""
