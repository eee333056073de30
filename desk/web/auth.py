"""Sign-up, sign-in, sign-out and the first-administrator setup link."""
from flask import Blueprint
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask_login import current_user
from flask_login import login_required
from flask_login import login_user
from flask_login import logout_user

from desk import policy
from desk.errors import DeskError
from desk.errors import TooManyAttempts
from desk.extensions import limiter
from desk.forms.auth import EmptyForm
from desk.forms.auth import LoginForm
from desk.forms.auth import SetupForm
from desk.forms.auth import SignupConfirmForm
from desk.forms.auth import SignupForm
from desk.i18n import gettext as _
from desk.services import auth as auth_service
from desk.services import people
from desk.services import sessions
from desk.services import setup
from desk.services.login_throttle import Limits
from desk.services.login_throttle import LoginThrottle
from desk.web.guards import client_ip
from desk.web.redirects import next_or

bp = Blueprint("auth", __name__)


def _login_limit() -> str:
    return current_app.config["LOGIN_ADDRESS_LIMIT"]


def _throttled(limit) -> None:
    """flask-limiter refused a sign-in or sign-up: the attempt is audited too."""
    auth_service.address_throttled(client_ip(), request.path)


def load_user(identity: str):
    """flask-login's user loader: the person whose signed-in browser both
    cookies name, while that browser's record lives."""
    return sessions.resume(identity, client_ip(), request.user_agent.string)


def sign_in(user, remember: bool = False) -> None:
    """Sign this browser in as ``user``: a new browser record, named by both cookies."""
    user.session_identity = sessions.start(user, client_ip(), request.user_agent.string,
                                           remember)
    login_user(user, remember=remember)


def _form_error(form, err: DeskError, template: str, **context):
    """Re-render a form with the service's message and its 4xx status."""
    form.form_errors.append(str(err))
    return render_template(template, form=form, **context), err.status


@bp.route("/signup", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"], on_breach=_throttled)
def signup():
    """An end user asks for an account: a link to finish goes to the address."""
    if current_user.is_authenticated:
        return redirect(url_for(policy.landing(current_user)))
    form = SignupForm()
    if not form.validate_on_submit():
        return render_template("auth/signup.html", form=form), 400 if form.is_submitted() else 200
    try:
        people.request_sign_up(form.name.data, form.email.data, form.password.data)
    except DeskError as err:
        return _form_error(form, err, "auth/signup.html")
    # The same page whether or not the address has an account: the mail says.
    return render_template("auth/signup_sent.html", email=form.email.data.strip())


@bp.route("/signup/confirm/<token>", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"], on_breach=_throttled)
def signup_confirm(token: str):
    """The link from the sign-up mail: enter the password again, and the
    account is made and signed in."""
    waiting = people.sign_up_link(token)
    if current_user.is_authenticated:
        return redirect(url_for(policy.landing(current_user)))
    form = SignupConfirmForm()
    if not form.validate_on_submit():
        return render_template("auth/signup_confirm.html", form=form, email=waiting["email"]), \
            400 if form.is_submitted() else 200
    try:
        user = people.complete_sign_up(token, form.password.data, client_ip())
    except DeskError as err:
        return _form_error(form, err, "auth/signup_confirm.html", email=waiting["email"])
    sign_in(user)
    flash(_("Welcome, %(name)s. Your account is ready.", name=user.name), "success")
    return redirect(url_for("portal.my_tickets"))


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"], on_breach=_throttled)
def login():
    """One sign-in for agents and end users."""
    if current_user.is_authenticated:
        return redirect(url_for(policy.landing(current_user)))
    form = LoginForm()
    if not form.validate_on_submit():
        return render_template("auth/login.html", form=form), 400 if form.is_submitted() else 200
    throttle = LoginThrottle(limiter.storage, Limits.of(current_app.config), form.email.data,
                             client_ip())
    try:
        user = auth_service.authenticate(form.email.data, form.password.data, client_ip(), throttle)
    except TooManyAttempts as err:
        page, status = _form_error(form, err, "auth/login.html")
        return page, status, {"Retry-After": str(err.retry_after)}
    except DeskError as err:
        return _form_error(form, err, "auth/login.html")
    sign_in(user, remember=bool(form.remember.data))
    return redirect(next_or(request.args.get("next"), url_for(policy.landing(user))))


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    """Sign out (a POST with a CSRF token, never a GET)."""
    form = EmptyForm()
    if not form.validate_on_submit():
        return redirect(url_for("portal.home"))
    auth_service.logout(current_user, current_user.get_id(), client_ip())
    logout_user()
    flash(_("You are signed out."), "info")
    return redirect(url_for("auth.login"))


@bp.route("/setup/<token>", methods=["GET", "POST"])
def first_admin(token: str):
    """The one-time link printed on first start: create the first administrator."""
    setup.check_token(token)
    form = SetupForm()
    if not form.validate_on_submit():
        return render_template("auth/setup.html", form=form, token=token), \
            400 if form.is_submitted() else 200
    try:
        admin = setup.complete(token, form.name.data, form.email.data, form.password.data,
                               client_ip())
    except DeskError as err:
        return _form_error(form, err, "auth/setup.html", token=token)
    sign_in(admin)
    flash(_("Your administrator account is ready."), "success")
    return redirect(url_for("agent.tickets"))
