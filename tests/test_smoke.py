import asyncio
from sdax import AsyncTask, AsyncTaskProcessor, task_func

async def test_runs():
    async def work(ctx):
        ctx.append(asyncio.get_running_loop().__class__.__name__)
    p = AsyncTaskProcessor.builder().add_task(AsyncTask("a", execute=task_func(work)), 0).build()
    ctx = []
    await p.process_tasks(ctx)
    print(ctx)
    assert len(ctx) == 1
