"""Ask an ACL file what clients may do: AclAuthorizer.

Loads MQTT_ACL_FILE (default: the file ``acl`` next to this script, the
example of the page) and prints a few answers, as the broker asks them on
every SUBSCRIBE, PUBLISH and delivery.
"""

from __future__ import annotations

import os
from pathlib import Path

from mqttproto.auth import AclAuthorizer

path = os.environ.get("MQTT_ACL_FILE") or Path(__file__).with_name("acl")
authorizer = AclAuthorizer.load(path)

print(authorizer.may_subscribe("dev1", "alice", "sensors/+/temperature"))  # True
print(authorizer.may_subscribe("dev1", "alice", "alice/secret/#"))  # False: denied
print(authorizer.may_receive("dev1", "alice", "alice/secret/key"))  # False: denied
print(authorizer.may_publish("dev1", "bob", "sensors/hall/temperature"))  # False: read only
print(authorizer.may_publish("dev1", "bob", "devices/dev1/status"))  # True: the pattern
print(authorizer.may_publish("#", "bob", "devices/#/status"))  # False: %c is data
print(authorizer.may_subscribe("dev2", None, "public/news"))  # True: anonymous
