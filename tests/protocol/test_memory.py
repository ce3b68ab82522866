"""One client's masked-input step allocates at most two vectors plus a fixed chunk."""

import tracemalloc

from secagg.crypto.prg import DEFAULT_CHUNK_BYTES
from secagg.protocol.server import ServerState
from tests.harness import Harness


def test_masked_input_step_allocates_two_vectors_and_a_chunk():
    m = 400_000  # 1.6 MB per uint32 vector
    h = Harness(n=6, t=4, m=m)
    h.run_until(ServerState.MASKED_INPUT)
    client, data = h.clients[0], h.inbox[0]
    tracemalloc.start()
    tracemalloc.reset_peak()
    before, _ = tracemalloc.get_traced_memory()
    reply = client.handle(data)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    vector_bytes = m * 4
    assert len(reply) > vector_bytes
    assert peak - before <= 2 * vector_bytes + DEFAULT_CHUNK_BYTES + 64 * 1024, (peak - before) / vector_bytes
