"""The HTTP service (``scaling serve``): the FastAPI app (``app``), one module per resource (``fits``, ``forecasts``,
``allocations``, ``backtests``), the request and response bodies (``schema``), the fits folder it reads (``store``),
its work limits and compute pool (``limits``) and RFC 9457 problem responses (``problems``)."""
