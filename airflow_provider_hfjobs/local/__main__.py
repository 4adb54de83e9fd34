from airflow_provider_hfjobs.local.cli import main

raise SystemExit(main())
