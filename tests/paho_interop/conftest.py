"""The vendored Paho suites are not pytest's to collect: ``client_test.py``
matches pytest's ``*_test.py`` and would run against port 1883.
``tests/test_paho_interop.py`` runs them, against a broker of its own."""

collect_ignore_glob = ["*.py", "mqtt"]
