from tests.payments.fixtures import fault_proxy, gateway, job_ctx, localstripe, pay, settings

__all__ = ["fault_proxy", "gateway", "job_ctx", "localstripe", "pay", "settings"]
