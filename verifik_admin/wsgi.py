"""
WSGI config for verifik_admin project.

It exposes the WSGI callable as a module-level variable named ``application``.

For more information on this file, see
https://docs.djangoproject.com/en/5.2/howto/deployment/wsgi/
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "verifik_admin.settings")

application = get_wsgi_application()

from .checks import refuse_unsafe_settings  # noqa: E402 - needs the apps loaded

refuse_unsafe_settings()  # gunicorn runs no system checks: a web process with unsafe settings must not start
