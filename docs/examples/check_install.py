"""What is installed: mqttproto's version, the codec in use, the extras.

Run it with the Python of the environment mqttproto is installed in.
"""

from __future__ import annotations

import importlib.util
from importlib import metadata

import mqttproto

print("mqttproto", metadata.version("mqttproto"))
# "cython": the compiled codec; "python": the pure-Python reference (no C
# compiler at install time, or MQTTPROTO_PURE_PYTHON=1 in the environment).
print("codec:", mqttproto.codec_implementation())
for extra, module in (("websocket", "wsproto"), ("trio", "trio")):
    installed = importlib.util.find_spec(module) is not None
    print(f"the {extra} extra ({module}):", "installed" if installed else "not installed")
