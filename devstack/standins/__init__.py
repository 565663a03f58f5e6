"""Local stand-ins for the services the Lambdas call: license-manager, the LMS (OAuth2 + edx-enterprise)
and Braze. werkzeug servers on 127.0.0.1 with ephemeral ports; see each module's docstring for the contract
sections it follows (/work/shared/contracts/upstream-apis.md)."""

from .base import RecordedRequest, Reply, Request, StandIn, route
from .braze import BrazeStandIn
from .foreign import ForeignHost
from .license_manager import LicenseManagerStandIn
from .lms import LmsStandIn
from .oauth import TokenRegistry

__all__ = [
    "BrazeStandIn",
    "ForeignHost",
    "LicenseManagerStandIn",
    "LmsStandIn",
    "RecordedRequest",
    "Reply",
    "Request",
    "StandIn",
    "TokenRegistry",
    "route",
]
