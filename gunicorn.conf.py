"""gunicorn settings shipped with crm-bridge: gunicorn reads ./gunicorn.conf.py from the working
directory by default (else pass ``-c /path/to/gunicorn.conf.py``). Command-line options still
win over these.

Requests gunicorn refuses itself (414 request line too long, 431 header fields too large, 400
malformed) are answered as JSON like everything else: see bridge/gunicorn_errors.py.
"""

from bridge.gunicorn_errors import install

install()
