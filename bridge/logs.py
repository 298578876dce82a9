"""Logging that never leaks a key: a filter on every handler scrubs ``access_key=…`` (and known
secrets) from each record, including Werkzeug's and gunicorn's request lines."""

from __future__ import annotations

import logging

from bridge.outbound.redaction import scrub_text


class ScrubSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        scrubbed = scrub_text(message)
        if scrubbed != message or record.args:
            record.msg = scrubbed
            record.args = None
        return True


_FILTER = ScrubSecretsFilter()


def install_scrubbing() -> None:
    """Attach the filter to the root logger's handlers and to the loggers that print URLs.

    Filters on a logger only see records logged to that logger, so they go on handlers too.
    """
    for name in ("", "werkzeug", "gunicorn.access", "gunicorn.error", "bridge", "crm_adapters"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
    if not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(_FILTER)
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)
