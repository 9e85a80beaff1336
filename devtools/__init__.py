"""Development tools: what ``make demo``, the tests and the benchmarks use, kept out of the installed package.

    local_prometheus.py  a throwaway Prometheus on a loopback port (the distribution's binary)
    remote_write.py      loading history into it through its remote-write receiver
    synthetic.py         synthetic-but-realistic series (trend, daily and weekly seasonality, noise)
    demo.py              ``make demo``: all of the above, and ``forecaster run`` on it

They live in a source checkout only: run them from its top folder
(``python -m devtools.demo``); the benchmarks put that folder on their path.
"""
