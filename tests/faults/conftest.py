"""Fault tests: the real app (granian, 2 API workers) and, where jobs matter, the real arq
worker, each in its own OS process, talking to PostgreSQL / Redis / localstripe through
`tests.faultproxy.TcpProxy`, so a test can take a peer away, cut every connection, or
black-hole it, and watch what the service does. Nothing inside the app is mocked."""

from tests.notifications.sms_fixtures import twilio
from tests.payments.fixtures import localstripe

__all__ = ["localstripe", "twilio"]
