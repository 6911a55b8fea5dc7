"""The real arq worker with timeouts short enough for fault tests (`kill -9`, Redis down):
a job killed mid-send is picked up again after `job_timeout + 10` s (arq's in-progress
key), so 5 s here instead of 60. (arq reads a settings class's own `__dict__`, so every
setting is named here rather than inherited.)"""

from __future__ import annotations

from workers.main import WorkerSettings as Production


class WorkerSettings:
    functions = Production.functions
    cron_jobs = Production.cron_jobs
    on_startup = Production.on_startup
    on_shutdown = Production.on_shutdown
    redis_settings = Production.redis_settings
    queue_name = Production.queue_name
    keep_result = Production.keep_result
    job_timeout = 5
    max_jobs = 20
