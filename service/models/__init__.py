from .base import Base, utcnow
from .devices import Device, Plan
from .pairs import HaPair, PairSearch, PairSync
from .subscriptions import DeliveryAttempt, EventDelivery, EventSubscription, OutboundEvent
from .tenancy import ApiToken, DashboardSession, Organization
from .timeline import Alarm, Event, Notification

__all__ = [
    "Alarm", "ApiToken", "Base", "DashboardSession", "DeliveryAttempt", "Device", "Event", "EventDelivery", "EventSubscription",
    "HaPair", "Notification", "Organization", "OutboundEvent", "PairSearch", "PairSync", "Plan", "utcnow",
]
