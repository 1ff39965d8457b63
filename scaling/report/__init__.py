"""Reports: PNG figures of a fit (``plots``) and the self-contained HTML report (``html``)."""
