"""Keep a password file from code: load it, add a user, save it, use it.

The file is MQTT_PASSWORD_FILE (default: passwd in a new temporary
directory), created if it does not exist. carol gets the password
MQTT_PASSWORD (default "s3cret"); the file is rewritten atomically, as
``mqttproto passwd`` does: a new file is readable by its owner only, an
existing one keeps its owner, group and permissions except those for others. Then the authenticator a
broker would use checks her password and a wrong one.
"""

from __future__ import annotations

import os
import stat
import tempfile

from mqttproto.auth import ConnectInfo, DeferredAuthResult, PasswordAuthenticator, PasswordFile
from mqttproto.enums import ProtocolVersion

path = os.environ.get("MQTT_PASSWORD_FILE") or os.path.join(tempfile.mkdtemp(), "passwd")
password = os.environ.get("MQTT_PASSWORD", "s3cret")

passwords = PasswordFile.load(path) if os.path.exists(path) else PasswordFile()
passwords.set("carol", password)
passwords.save(path)  # atomic; never readable by others
authenticator = PasswordAuthenticator(passwords, allow_anonymous=False)

mode = stat.S_IMODE(os.stat(path).st_mode)
print(f"saved {path}: mode {mode:04o}, users {', '.join(passwords)}")
for attempt, what in [(password, "her password"), ("guess", "a guess")]:
    info = ConnectInfo("carol-laptop", "carol", attempt.encode(), ProtocolVersion.MQTT_5_0)
    # A hash takes time: the answer is deferred, and a broker server computes
    # it on a worker thread. compute() does it here.
    answer = authenticator.authenticate(info)
    if isinstance(answer, DeferredAuthResult):
        answer = answer.compute()
    print(f"carol, {what}:", answer.reason_code.name)
