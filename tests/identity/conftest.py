from tests.notifications.sms_fixtures import job_ctx, settings, twilio

__all__ = ["job_ctx", "settings", "twilio"]
