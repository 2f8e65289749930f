"""The load test of bench/load.py: the stack it starts (``stack``, ``nginx``), the load-generator processes
(``generator``) and the report (``report``)."""
