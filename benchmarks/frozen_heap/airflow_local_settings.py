"""An ``airflow_local_settings.py`` that freezes the heap Airflow builds on import (``scale.py --freeze``).

Airflow imports this module (from ``$AIRFLOW_HOME/config/`` or the path) while ``import airflow``
initializes its settings, in every process. ``gc.freeze()`` moves the objects alive then (about 100,000 on Airflow 3.3:
modules, classes, functions) out of the cyclic collector's reach, so a full collection later walks only
what the process made since, as Airflow's DAG processor and LocalExecutor do for their own heaps. Those
objects live for the whole process anyway.
"""

import gc

gc.freeze()

__all__: list[str] = []  # nothing here for Airflow's settings or policies
