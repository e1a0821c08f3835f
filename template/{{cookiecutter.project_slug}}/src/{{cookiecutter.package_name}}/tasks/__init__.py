"""The tasks, one module per concern. Importing this package imports every module in it, so a new module is
registered by existing: there is no list to forget. Modules named `_*` are left out (helpers, not tasks)."""
import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
