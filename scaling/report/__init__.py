"""Reports: PNG figures of a fit (``plots``) and the self-contained HTML report (``html``, drawing its figures in
``figures`` and formatting its tables in ``tables``)."""
