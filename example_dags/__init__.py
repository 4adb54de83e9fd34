"""Example DAGs of the Hugging Face Jobs provider, shipped in the package as ``airflow_provider_hfjobs.example_dags``:
copy this folder's files into a DAGs folder (``scripts/`` too: the nightly-training example runs them)."""
