#!/bin/sh
# Try a running broker with the mosquitto clients (apt-get install mosquitto-clients).
# MQTT_HOST and MQTT_PORT say where it listens (default 127.0.0.1:1883).
set -e
host="${MQTT_HOST:-127.0.0.1}"
port="${MQTT_PORT:-1883}"

# Retained: the broker keeps the message for whoever subscribes later.
mosquitto_pub -h "$host" -p "$port" -t demo/hello -m 'hello, broker' -r
# Prints "demo/hello hello, broker" and exits after that one message.
mosquitto_sub -h "$host" -p "$port" -t 'demo/#' -v -C 1 -W 10
# An empty retained message deletes the retained one.
mosquitto_pub -h "$host" -p "$port" -t demo/hello -r -n
