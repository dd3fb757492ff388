"""The admin token: admin routes need ``Authorization: Bearer <token>``; read routes need nothing.

No token configured means the admin API is off (403 for every admin call),
so an API started without one can never be changed through. A missing header
is 401 (with ``WWW-Authenticate: Bearer``), a wrong token 403. Tokens are
compared in constant time.
"""

from __future__ import annotations

import hmac
from typing import Callable, Optional

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

bearer = HTTPBearer(auto_error=False, description="The admin token given to `ruth-ai api --admin-token-file`.")


def admin_guard(token: Optional[str]) -> Callable[..., None]:
    """A FastAPI dependency that lets a request through only with ``token``."""
    expected = token.encode() if token else None

    def require_admin(credentials: Optional[HTTPAuthorizationCredentials] = Depends(bearer)) -> None:
        if expected is None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "the admin API is disabled: start ruth-ai api with "
                                                           "--admin-token-file")
        if credentials is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "admin calls need Authorization: Bearer TOKEN",
                                headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(credentials.credentials.encode(), expected):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "wrong admin token")

    return require_admin
