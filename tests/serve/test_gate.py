"""The fair gate in front of the shared models: first come, first served, a bounded number of
turns at once, and a waiter that gives up never loses or leaks a slot."""

from __future__ import annotations

import asyncio

from speechllm.serve.gate import FairGate


def test_turns_run_in_arrival_order_within_the_worker_limit():
    async def run():
        gate = FairGate(workers=2)
        order: list[int] = []
        busy, peak = 0, 0

        async def turn(n: int) -> None:
            nonlocal busy, peak
            async with gate.turn():
                order.append(n)
                busy += 1
                peak = max(peak, busy)
                await asyncio.sleep(0.01)
                busy -= 1

        tasks = []
        for n in range(10):
            tasks.append(asyncio.create_task(turn(n)))
            await asyncio.sleep(0)  # arrive one after another
        await asyncio.gather(*tasks)
        gate.close()
        return order, peak, gate

    order, peak, gate = asyncio.run(run())
    assert order == list(range(10)) and peak == 2
    assert gate.running == 0 and gate.queued == 0


def test_a_cancelled_waiter_does_not_lose_the_slot():
    async def run():
        gate = FairGate(workers=1)
        release = asyncio.Event()
        got: list[str] = []

        async def holder() -> None:
            async with gate.turn():
                got.append("holder")
                await release.wait()

        async def waiter(name: str) -> None:
            async with gate.turn():
                got.append(name)

        h = asyncio.create_task(holder())
        await asyncio.sleep(0)
        quitter = asyncio.create_task(waiter("quitter"))
        patient = asyncio.create_task(waiter("patient"))
        await asyncio.sleep(0)
        assert gate.queued == 2
        quitter.cancel()  # e.g. a client that disconnected while queued
        release.set()
        await asyncio.gather(h, patient)
        result = await asyncio.gather(quitter, return_exceptions=True)
        value = await gate.run(lambda: 41 + 1)  # the gate still works afterwards
        gate.close()
        return got, result, value, gate

    got, result, value, gate = asyncio.run(run())
    assert got == ["holder", "patient"] and isinstance(result[0], asyncio.CancelledError)
    assert value == 42 and gate.running == 0 and gate.queued == 0
