"""JSON only: remove every other codec from kombu's registry so this process can neither send nor read them."""
from kombu.serialization import registry

from . import errors

ALLOWED = "json"


def remove_unsafe_serializers() -> None:
    # accept_content already refuses pickle/yaml/msgpack on receipt; unregistering also stops this process
    # from *producing* them (a producer that pickles invites workers to be configured to unpickle).
    for name in list(registry._encoders):  # kombu exposes no public listing of registered codecs
        if name != ALLOWED:
            registry.unregister(name)


def require_json(serializer: str | None) -> None:
    if serializer not in (None, ALLOWED):
        raise errors.ImproperlyConfigured(errors.UNSAFE_SERIALIZER.format(name=serializer))
