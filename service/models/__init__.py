from .base import Base, utcnow
from .devices import Device, Plan
from .pairs import HaPair, PairSync
from .tenancy import ApiToken, Organization
from .timeline import Alarm, Event, Notification

__all__ = [
    "Alarm", "ApiToken", "Base", "Device", "Event", "HaPair", "Notification", "Organization",
    "PairSync", "Plan", "utcnow",
]
