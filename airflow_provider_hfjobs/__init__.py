"""Apache Airflow provider for Hugging Face Jobs."""

__version__ = "0.2.0"
