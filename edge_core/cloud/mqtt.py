"""The MQTT side of the cloud link (protocol.md 2.1–2.3, 2.7).

Two ways in: ``check_broker`` is the short-lived boot check (connect, wait
for CONNACK, disconnect) that turns every failure into one readable
``BrokerUnavailable`` line; ``MqttSession`` is the one long-lived session
that publishes health and logs and delivers commands. The session never
raises for an unreachable broker: paho's network thread reconnects with a
capped backoff and every subscription is renewed on each CONNACK.

Deliberately left out: what the messages mean (topics are spelled in
``topics``, payloads are built and handled by the layers above), QoS above
0, retained messages (a retained message delivered at subscribe time is
dropped, never handed to a handler), persistent sessions and a Last Will.

Handlers run on paho's network thread, so they must be cheap (the daemon's
handler only puts the message on a queue).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import socket
import ssl
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_core.errors import BrokerUnavailable

_log = logging.getLogger(__name__)

Handler = Callable[[str, object], None]
Payload = Mapping[str, Any] | bytes | str

PLACEHOLDER_USERNAME = "mqttcyb"
API_TOKEN_PREFIX = "cw_"
HASHED_USERNAME_PREFIX = "cwh_"

# MQTT v5 reason codes (v3.1.1 CONNACK codes 4 and 5 arrive mapped to these).
_BAD_CREDENTIALS = 134
_NOT_AUTHORIZED = 135


@dataclass(frozen=True)
class MqttConfig:
    """Everything needed to open a broker session (protocol.md 2.1, 2.2)."""

    host: str
    port: int
    use_tls: bool
    ca_cert: str | None
    username: str
    password: str | None
    protocol: int
    keepalive: int = 60
    connect_timeout: float = 10.0
    connect_attempts: int = 3
    max_payload_bytes: int = 32 * 1024 * 1024
    max_unsent_bytes: int = 8 * 1024 * 1024
    """Bytes accepted but not yet handed to the socket, at most: over it
    (a slow uplink) ``publish`` refuses instead of queueing without end."""
    topic_aliases: bool = False
    reconnect_min_delay: float = 1.0
    reconnect_max_delay: float = 60.0

    def __post_init__(self) -> None:
        if self.protocol not in (5, 311):
            raise ValueError(f"MQTT protocol must be 5 or 311, not {self.protocol!r}")

    @property
    def endpoint(self) -> str:
        """``host:port`` for messages."""
        return f"{self.host}:{self.port}"


def broker_credentials(
    *, token: str, username_setting: str, password_setting: str | None
) -> tuple[str, str]:
    """The (username, password) to send to the broker (protocol.md 2.2).

    With the placeholder username and an API-token password, the username
    is ``cwh_`` plus the SHA-256 of that password, which the broker checks
    against the password at CONNECT. A legacy broker password (not
    starting ``cw_``) or a real username is sent as given.
    """
    password = password_setting or token
    username = username_setting or PLACEHOLDER_USERNAME
    password_is_token = not password_setting or password_setting.startswith(
        API_TOKEN_PREFIX
    )
    if username != PLACEHOLDER_USERNAME or not password_is_token:
        return username, password
    digest = hashlib.sha256(password.encode("utf-8")).hexdigest()
    return f"{HASHED_USERNAME_PREFIX}{digest}", password


def new_client_id(producer: str = "edge-core") -> str:
    """A fresh client id ``<producer>_live_<32 hex>`` (protocol.md 2.3)."""
    return f"{producer}_live_{uuid.uuid4().hex}"


def encode_payload(payload: Payload, *, session_id: str | None) -> bytes:
    """The bytes to publish (protocol.md 2.3, 2.7).

    Bytes and text go out unchanged. A mapping becomes strict compact JSON
    (NaN and ±Inf turn into null) and gets ``session_id`` unless it has one
    or ``session_id`` is None. Raises TypeError for values JSON cannot hold.
    """
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode("utf-8")
    body = dict(payload)
    if session_id is not None and "session_id" not in body:
        body["session_id"] = session_id
    text = json.dumps(_finite(body), allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8")


def decode_payload(raw: bytes | bytearray) -> object:
    """An incoming payload as JSON when it parses, else text, else bytes.

    JSON nested deeper than the parser's recursion limit is kept as text,
    like any other payload that does not parse.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return bytes(raw)
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


class MqttSession:
    """The long-lived broker session shared by every publisher and subscriber.

    ``start`` returns at once; the session connects (and reconnects) in
    the background. ``publish`` returns False instead of raising while the
    session is down. Subscriptions are remembered and renewed on every
    CONNACK.
    """

    def __init__(self, config: MqttConfig, *, client_id: str | None = None) -> None:
        self._config = config
        self._client_id = client_id or new_client_id()
        self._lock = threading.Lock()
        self._handlers: dict[str, Handler] = {}
        self._connected = threading.Event()
        self._aliases: dict[str, int] = {}
        self._alias_limit = 0
        self._reported: str | None = None
        self._started = False
        self._stopping = False
        # Messages paho holds for the socket, oldest first, with their sizes.
        self._unsent: deque[tuple[paho.MQTTMessageInfo, int]] = deque()
        self._unsent_bytes = 0
        self._unsent_lock = threading.Lock()
        self._client = _new_client(config, self._client_id, reconnect=True)
        self._client.reconnect_delay_set(
            min_delay=config.reconnect_min_delay,  # type: ignore[arg-type]
            max_delay=config.reconnect_max_delay,  # type: ignore[arg-type]
        )
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    @property
    def client_id(self) -> str:
        """The MQTT client id, also sent as ``session_id`` in payloads."""
        return self._client_id

    @property
    def is_connected(self) -> bool:
        """True between a successful CONNACK and the next disconnect."""
        return self._connected.is_set()

    @property
    def can_send(self) -> bool:
        """Connected, and the uplink keeps up: less than half of
        ``max_unsent_bytes`` waits, so a caller that checks this first
        (and holds its messages otherwise) never meets a refusal."""
        if not self._connected.is_set():
            return False
        return not self._backlogged(self._config.max_unsent_bytes // 2)

    def start(self) -> None:
        """Begin connecting in the background; never blocks or raises on I/O."""
        with self._lock:
            if self._started:
                return
            self._started = True
        self._client.connect_async(
            self._config.host, self._config.port, keepalive=self._config.keepalive
        )
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the session to be up."""
        return self._connected.wait(timeout)

    def subscribe(self, topic: str, handler: Handler) -> None:
        """Deliver messages matching ``topic`` to ``handler``, across reconnects."""
        if not topic:
            raise ValueError("an MQTT subscription needs a non-empty topic")
        with self._lock:
            self._handlers[topic] = handler
            connected = self._connected.is_set()
        if connected:
            self._client.subscribe(topic, qos=0)

    def unsubscribe(self, topic: str) -> None:
        """Stop delivering ``topic``; unknown topics are ignored."""
        with self._lock:
            known = self._handlers.pop(topic, None) is not None
            connected = self._connected.is_set()
        if known and connected:
            self._client.unsubscribe(topic)

    def publish(
        self, topic: str, payload: Payload, *, add_session_id: bool = True
    ) -> bool:
        """Send one QoS 0, non-retained message; False if it was not sent."""
        if not self._connected.is_set():
            _log.debug("MQTT publish to %s skipped: not connected", topic)
            return False
        session_id = self._client_id if add_session_id else None
        try:
            data = encode_payload(payload, session_id=session_id)
        except (TypeError, ValueError) as exc:
            _log.warning(
                "MQTT payload for %s is not valid JSON (%s); dropped", topic, exc
            )
            return False
        if len(data) > self._config.max_payload_bytes:
            _log.warning(
                "MQTT payload for %s is %d bytes, over the %d byte limit; dropped",
                topic,
                len(data),
                self._config.max_payload_bytes,
            )
            return False
        if self._backlogged(len(data)):
            return False
        wire_topic, properties = self._alias_for(topic)
        try:
            info = self._client.publish(
                wire_topic, data, qos=0, retain=False, properties=properties
            )
        except ValueError as exc:
            _log.warning("MQTT publish to %r refused (%s); dropped", topic, exc)
            return False
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False
        with self._unsent_lock:
            self._unsent.append((info, len(data)))
            self._unsent_bytes += len(data)
        return True

    def _backlogged(self, adding: int) -> bool:
        """Whether ``adding`` more bytes than wait now pass ``max_unsent_bytes``.

        A QoS 0 message counts until paho has written it to the socket.
        The first refusal of a backlog is a warning, its end one line.
        """
        with self._unsent_lock:
            while self._unsent and self._unsent[0][0].is_published():
                self._unsent_bytes -= self._unsent.popleft()[1]
            unsent = self._unsent_bytes
        limit = self._config.max_unsent_bytes
        if unsent + adding <= limit or not unsent:
            if unsent == 0 and self._reported == "backlog":
                self._report(
                    "caught up", logging.INFO, "MQTT uplink caught up; sending again"
                )
            return False
        self._report(
            "backlog",
            logging.WARNING,
            "MQTT uplink to %s is not keeping up (%d bytes not sent yet); new "
            "messages wait or are dropped until it does",
            self._config.endpoint,
            unsent,
        )
        return True

    def stop(self, timeout: float = 2.0) -> None:
        """Disconnect and stop the network thread, waiting at most ``timeout``."""
        self._stopping = True
        self._connected.clear()
        self._client.disconnect()
        # loop_stop joins without a deadline; a connect attempt in flight may
        # hold the thread for connect_timeout, so wait for it on the side.
        stopper = threading.Thread(
            target=self._client.loop_stop, name="mqtt-stop", daemon=True
        )
        stopper.start()
        stopper.join(timeout)
        if stopper.is_alive():
            _log.debug("MQTT network thread still finishing a connect attempt")

    # -- paho callbacks (network thread) ------------------------------------

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._report(
                f"refused:{reason}",
                logging.WARNING,
                "%s; retrying in the background",
                _refusal_message(self._config.endpoint, reason),
            )
            return
        with self._unsent_lock:
            # What the last connection did not write is gone with it.
            self._unsent.clear()
            self._unsent_bytes = 0
        with self._lock:
            self._aliases.clear()
            self._alias_limit = _alias_limit(self._config, properties)
            topics = list(self._handlers)
            self._connected.set()
        for topic in topics:
            client.subscribe(topic, qos=0)
        self._report(
            "connected",
            logging.INFO,
            "MQTT connected to %s as %s (%d subscriptions renewed)",
            self._config.endpoint,
            self._client_id,
            len(topics),
        )

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        # paho calls this from inside its ``except OSError`` block, so the
        # exception being handled is the reason for the failure.
        exc = sys.exc_info()[1]
        self._report(
            f"failed:{type(exc).__name__}",
            logging.WARNING,
            "%s; retrying in the background every %g-%g s",
            connect_failure(self._config, exc),
            self._config.reconnect_min_delay,
            self._config.reconnect_max_delay,
        )

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if self._stopping:
            _log.debug("MQTT session to %s closed", self._config.endpoint)
            return
        if not was_connected:
            # A refused or broken attempt: already reported by the connect path.
            _log.debug("MQTT attempt to %s ended: %s", self._config.endpoint, reason)
            return
        self._report(
            "disconnected",
            logging.WARNING,
            "MQTT connection to %s lost (%s); reconnecting in the background",
            self._config.endpoint,
            reason,
        )

    def _on_message(
        self, client: paho.Client, userdata: Any, message: paho.MQTTMessage
    ) -> None:
        # An exception escaping a paho callback kills the network thread,
        # and with it every later message and reconnect.
        topic = message.topic
        if message.retain:
            # The broker kept it from before this subscription: old state,
            # not a command meant for now (a live message arrives with the
            # flag cleared). Acting on it would repeat it at every
            # reconnect and every start.
            _log.debug("ignoring a retained message on %s", topic)
            return
        try:
            payload = decode_payload(message.payload)
        except Exception:
            _log.exception("MQTT message on %s could not be decoded; dropped", topic)
            return
        with self._lock:
            handlers = [
                handler
                for pattern, handler in self._handlers.items()
                if paho.topic_matches_sub(pattern, topic)
            ]
        for handler in handlers:
            try:
                handler(topic, payload)
            except Exception:
                _log.exception("MQTT handler for %s failed; message dropped", topic)

    # -- helpers -------------------------------------------------------------

    def _report(self, state: str, level: int, message: str, *args: object) -> None:
        """Log a connection state once when it changes, at DEBUG while it holds."""
        with self._lock:
            changed = self._reported != state
            self._reported = state
        _log.log(level if changed else logging.DEBUG, message, *args)

    def _alias_for(self, topic: str) -> tuple[str, Properties | None]:
        """The topic to send and its alias property (protocol.md 2.1).

        The alias table is per connection and reset on CONNACK. Reconnects
        wait at least ``reconnect_min_delay``, so a publish cannot carry an
        alias from the previous connection in practice.
        """
        with self._lock:
            if self._alias_limit <= 0:
                return topic, None
            alias = self._aliases.get(topic)
            first_use = alias is None
            if alias is None:
                if len(self._aliases) >= self._alias_limit:
                    return topic, None
                alias = len(self._aliases) + 1
                self._aliases[topic] = alias
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.TopicAlias = alias
        return (topic if first_use else ""), properties


def check_broker(
    config: MqttConfig,
    *,
    client_id: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Connect once, wait for CONNACK, disconnect (protocol.md 2.1).

    Makes ``config.connect_attempts`` attempts with a backoff of
    min(2 × attempt, 5) s between them. Raises ``BrokerUnavailable`` with
    one line naming the broker, the reason and what to check.
    """
    attempts = max(1, config.connect_attempts)
    for attempt in range(1, attempts + 1):
        try:
            _probe(config, client_id or new_client_id())
        except BrokerUnavailable as exc:
            if attempt == attempts:
                raise BrokerUnavailable(
                    f"{exc} (after {attempts} attempts)", retry_after=5.0
                ) from exc
            delay = float(min(2 * attempt, 5))
            _log.debug(
                "MQTT check attempt %d failed: %s; next in %g s", attempt, exc, delay
            )
            sleep(delay)
        else:
            _log.debug("MQTT broker %s accepted the session", config.endpoint)
            return


def _probe(config: MqttConfig, client_id: str) -> None:
    """One connect / CONNACK / disconnect round."""
    client = _new_client(config, client_id, reconnect=False)
    acked = threading.Event()
    reasons: list[ReasonCode] = []

    def on_connect(
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        reasons.append(reason)
        acked.set()

    def on_disconnect(
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        acked.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    try:
        with _connect_errors(config):
            client.connect(config.host, config.port, keepalive=config.keepalive)
        client.loop_start()
        if not acked.wait(config.connect_timeout):
            raise BrokerUnavailable(
                f"MQTT broker {config.endpoint} sent no CONNACK within "
                f"{config.connect_timeout:g} s; check that the port is an MQTT "
                f"listener and CYBERWAVE_MQTT_USE_TLS matches it"
            )
        if not reasons:
            raise BrokerUnavailable(
                f"MQTT broker {config.endpoint} closed the connection before "
                f"CONNACK; check that CYBERWAVE_MQTT_USE_TLS matches the port"
            )
        if reasons[0].is_failure:
            raise BrokerUnavailable(_refusal_message(config.endpoint, reasons[0]))
    finally:
        client.disconnect()
        client.loop_stop()


@contextmanager
def _connect_errors(config: MqttConfig) -> Iterator[None]:
    """Turn socket and TLS failures of a connect into ``BrokerUnavailable``."""
    try:
        yield
    except OSError as exc:
        raise BrokerUnavailable(connect_failure(config, exc)) from exc


def connect_failure(config: MqttConfig, exc: BaseException | None) -> str:
    """One line naming the broker, why a connect failed and what to check."""
    where = f"MQTT broker {config.endpoint}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"{where}: TLS verification failed ({exc.verify_message}); set "
            f"CYBERWAVE_MQTT_TLS_CA_CERT to the CA that signed the broker certificate"
        )
    tls_hint = "check that the port speaks TLS and CYBERWAVE_MQTT_USE_TLS"
    if isinstance(exc, ssl.SSLError):
        return f"{where}: TLS handshake failed ({exc.reason or exc}); {tls_hint}"
    if isinstance(exc, ConnectionResetError) and config.use_tls:
        return f"{where}: TLS handshake failed (connection reset); {tls_hint}"
    if isinstance(exc, socket.gaierror):
        return (
            f"{where}: host name could not be resolved ({exc.strerror}); check "
            f"CYBERWAVE_MQTT_HOST"
        )
    if isinstance(exc, ConnectionRefusedError):
        return (
            f"{where} unreachable: connection refused; check that the broker runs "
            f"and CYBERWAVE_MQTT_HOST / CYBERWAVE_MQTT_PORT"
        )
    if isinstance(exc, TimeoutError):
        return (
            f"{where} unreachable: no answer within {config.connect_timeout:g} s; "
            f"check the network and firewall"
        )
    if isinstance(exc, OSError):
        return f"{where} unreachable ({exc.strerror or exc}); check the network"
    return f"{where} unreachable; check the network and CYBERWAVE_MQTT_HOST"


def _refusal_message(endpoint: str, reason: ReasonCode) -> str:
    if reason.value == _BAD_CREDENTIALS:
        return (
            f"MQTT broker {endpoint} refused the session: bad credentials; check "
            f"the API token and CYBERWAVE_MQTT_USERNAME / CYBERWAVE_MQTT_PASSWORD"
        )
    if reason.value == _NOT_AUTHORIZED:
        return (
            f"MQTT broker {endpoint} refused the session: not authorised; check "
            f"the API token and CYBERWAVE_MQTT_USERNAME / CYBERWAVE_MQTT_PASSWORD"
        )
    return f"MQTT broker {endpoint} refused the session: {reason}"


def _alias_limit(config: MqttConfig, properties: Properties | None) -> int:
    if not config.topic_aliases or config.protocol != 5 or properties is None:
        return 0
    return int(getattr(properties, "TopicAliasMaximum", 0) or 0)


class _CallbackErrors(logging.Filter):
    """Of paho's own log, only what a suppressed callback exception says."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage().startswith("Caught exception")


def _paho_logger() -> logging.Logger:
    """The logger paho reports to (made once per process)."""
    logger = logging.getLogger("edge_core.cloud.paho")
    if not any(isinstance(f, _CallbackErrors) for f in logger.filters):
        logger.addFilter(_CallbackErrors())
    return logger


def _new_client(config: MqttConfig, client_id: str, *, reconnect: bool) -> paho.Client:
    """A paho client set up for ``config``; it does not connect yet."""
    protocol = paho.MQTTv5 if config.protocol == 5 else paho.MQTTv311
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
        reconnect_on_failure=reconnect,
    )
    client.connect_timeout = config.connect_timeout
    # A callback that raises despite its own guards is logged by paho
    # instead of ending the network thread (and every reconnect with it).
    client.suppress_exceptions = True
    client.enable_logger(_paho_logger())
    if config.username:
        client.username_pw_set(config.username, config.password)
    if config.use_tls:
        # No client certificate; verification against the given CA or the
        # system store, with host name checking (paho's defaults).
        client.tls_set(ca_certs=config.ca_cert)
    return client
