import pytest


@pytest.fixture(scope="module", autouse=True)
def faiss_single_thread():
    """FAISS on one OpenMP thread while these tests run: the tests are tiny, and on a
    busy machine OpenMP's spinning threads make each call ~1000x slower."""
    try:
        import faiss
    except ImportError:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)
