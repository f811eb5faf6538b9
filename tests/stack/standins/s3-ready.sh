#!/bin/bash
# `mc ready local`: exits 0 once the S3 API answers on port 9000.
exec /opt/moto/bin/python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9000/', timeout=4)"
