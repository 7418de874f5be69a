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


def test_idle_work_runs_once_when_the_last_turn_ends_not_between_queued_turns():
    # the server hands freed memory back to the system whenever it falls idle
    # (serve/heap.py); a busy server must not pay for it between queued turns
    async def run():
        calls: list[int] = []
        gate = FairGate(workers=1, on_idle=lambda: calls.append(gate.running))

        async def turn() -> None:
            async with gate.turn():
                await asyncio.sleep(0.01)

        await asyncio.gather(*(turn() for _ in range(3)))
        for _ in range(100):  # on_idle runs in the gate's pool
            if calls:
                break
            await asyncio.sleep(0.01)
        after_burst = list(calls)
        await gate.run(lambda: None)
        for _ in range(100):
            if len(calls) > 1:
                break
            await asyncio.sleep(0.01)
        gate.close()
        return after_burst, calls

    after_burst, calls = asyncio.run(run())
    assert after_burst == [0]  # once for the burst of three, with nothing running
    assert calls == [0, 0]  # and again after the next turn
