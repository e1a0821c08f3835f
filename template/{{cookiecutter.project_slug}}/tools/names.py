"""Rules for the names the stack derives other names from. One definition for the bake (hooks/pre_gen_project.py
loads this file by path, before the project exists) and for `python -m tools.tenants`: a name the bake refuses is
refused later too. Standard library only, for that reason."""
import re

# A vhost name becomes a RabbitMQ vhost, part of user names and certificate subjects, a compose service, secret
# and volume name.
VHOST = re.compile(r"^[a-z][a-z0-9-]{0,22}[a-z0-9]$")
MAX_VHOSTS = 16


RESERVED_VHOSTS = ("dashboard",)


def vhost_problem(name: str) -> str | None:
    """Why `name` cannot be a vhost, in one sentence, or None."""
    if not VHOST.match(name):
        return (f"vhost {name!r} must be 2-24 characters of lowercase letters, digits and hyphens, "
                "starting with a letter and not ending with a hyphen.")
    if name in RESERVED_VHOSTS:
        return (f"vhost {name!r} is reserved: the dashboards' certificates and logins are named "
                f"{name}-<vhost>, which its own users' would collide with; choose another name.")
    return None


def vhosts_problem(vhosts: list[str]) -> str | None:
    """Why this list of vhosts cannot be a stack's, in one sentence, or None."""
    if any(not vhost for vhost in vhosts):
        return "the vhosts must be a comma-separated list of names with no empty entries."
    for vhost in vhosts:
        problem = vhost_problem(vhost)
        if problem:
            return problem
    duplicates = sorted({vhost for vhost in vhosts if vhosts.count(vhost) > 1})
    if duplicates:
        return f"vhosts lists {', '.join(duplicates)} more than once; each vhost must be unique."
    if len(vhosts) > MAX_VHOSTS:
        return f"vhosts lists {len(vhosts)} vhosts; at most {MAX_VHOSTS} are supported by one broker here."
    return None
