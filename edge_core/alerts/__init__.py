"""The alert lifecycle: what the edge core tells the web UI, and when.

Layer between the cloud client and the parts that decide (drivers, the
daemon): ``AlertBook`` builds the payloads of protocol.md 1.8 and hands
every call to ``AlertOutbox``, one background thread that sends them in
order, throttles progress updates and waits out a backend that is away,
so no caller ever waits on REST. ``PullProgress`` turns image-pull events
into the pull keys of a ``driver_starting`` card.
"""

from edge_core.alerts.book import AlertBook, RestartAlert, StartingAlert
from edge_core.alerts.outbox import AlertHandle, AlertOutbox
from edge_core.alerts.progress import PullProgress

__all__ = [
    "AlertBook",
    "AlertHandle",
    "AlertOutbox",
    "PullProgress",
    "RestartAlert",
    "StartingAlert",
]
