import pytest

from skmoby.query import kcenter


@pytest.fixture(scope="session", autouse=True)
def _keops_verdicts_in_a_temporary_cache(tmp_path_factory):
    """KeOps probe verdicts go to a folder of this test session, not the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        mp.setattr(kcenter, "_KEOPS_STATE", {})
        yield
