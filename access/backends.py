"""The lockout check of django-axes, as the first authentication backend."""

from axes.backends import AxesStandaloneBackend


class LockoutBackend(AxesStandaloneBackend):
    """Refuses a locked-out username before any password is checked.

    Axes needs the request (the client's address, the path) and raises without one. The only
    callers of authenticate() without a request are code, not a login form: the test client's
    login(), a shell. There is nothing to count or lock for them, so they pass through to
    ModelBackend; every login through the admin's form carries its request and is checked.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
