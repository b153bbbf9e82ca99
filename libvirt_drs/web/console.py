"""The web console: server-rendered pages whose scripts call the REST API (same origin,
the session cookie, the CSRF token from the page). No CDN: the chart library is the
Chart.js file shipped in static/vendor/.

Pages: overview, VMs (search, sort, the migrate dialog), recommendations (record, apply
one or all), hosts (maintenance enter and exit, what could not move and why), jobs,
audit. Login takes an API token and starts a session; the token never reaches the page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from libvirt_drs import __version__
from libvirt_drs.operations import reads, views
from libvirt_drs.web.auth import SESSION_COOKIE, Session, login, same_origin, session_of

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parent / "templates"))
router = APIRouter(include_in_schema=False)
PAGES = (("/", "Overview"), ("/vms", "VMs"), ("/recommendations", "Recommendations"),
         ("/hosts", "Hosts"), ("/jobs", "Jobs"), ("/audit", "Audit log"))


def wants_html(request: Request) -> bool:
    """Everything outside /api/ is a page: an unauthenticated visit goes to the login."""
    return not request.url.path.startswith("/api/")


def page_session(request: Request) -> Session:
    session = session_of(request)
    if session is None:
        raise HTTPException(401, "log in")
    return session


PageSession = Annotated[Session, Depends(page_session)]


def _page(request: Request, template: str, session: Session, **context: Any) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(request, template, {
        "pages": PAGES, "user": session.caller.name, "role": str(session.caller.role),
        "csrf": session.csrf, "version": __version__, **context})


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(request, "login.html", {"error": None,
                                                              "version": __version__})


@router.post("/login")
def login_submit(request: Request, token: Annotated[str, Form(max_length=200)]) -> Response:
    if not same_origin(request):
        raise HTTPException(403, "cross-site login refused")
    made = login(request, token.strip())
    if made is None:
        return TEMPLATES.TemplateResponse(request, "login.html", {
            "error": "That token is unknown or revoked.", "version": __version__},
            status_code=401)
    sid, _session = made
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https",
                        max_age=int(request.app.state.sessions.ttl_s))
    return response


@router.post("/logout")
def logout(request: Request, csrf_token: Annotated[str, Form()] = "") -> Response:
    session = session_of(request)
    sid = request.cookies.get(SESSION_COOKIE)
    if session is not None and sid and csrf_token == session.csrf and same_origin(request):
        request.app.state.sessions.drop(sid)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, session: PageSession) -> HTMLResponse:
    cl = request.app.state.cluster
    status = views.status(reads.cluster_status(cl, session.caller, with_vms=False))
    return _page(request, "overview.html", session, status=status,
                 vm_count=sum(h["vms"] for h in status["hosts"]))


@router.get("/vms", response_class=HTMLResponse)
def vms_page(request: Request, session: PageSession) -> HTMLResponse:
    return _page(request, "vms.html", session)


@router.get("/recommendations", response_class=HTMLResponse)
def recommendations_page(request: Request, session: PageSession) -> HTMLResponse:
    return _page(request, "recommendations.html", session)


@router.get("/hosts", response_class=HTMLResponse)
def hosts_page(request: Request, session: PageSession) -> HTMLResponse:
    return _page(request, "hosts.html", session)


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, session: PageSession) -> HTMLResponse:
    return _page(request, "jobs.html", session)


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, session: PageSession) -> HTMLResponse:
    return _page(request, "audit.html", session)
