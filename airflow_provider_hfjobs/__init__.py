"""Apache Airflow provider for Hugging Face Jobs."""

__version__ = "0.2.0"

from airflow_provider_hfjobs._connection_scheme import install as _install_connection_scheme

_install_connection_scheme()
