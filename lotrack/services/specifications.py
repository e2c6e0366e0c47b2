"""QC specifications, versioned per product; activating a version needs a QA signature."""

from __future__ import annotations

import hashlib

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lotrack import audit
from lotrack.errors import NotFound, RuleViolation
from lotrack.models import Product, Specification, User
from lotrack.models.base import utcnow
from lotrack.schemas.lots import SpecFile
from lotrack.services.auth import reauthenticate
from lotrack.services.products import get_product
from lotrack.services.roles import require_role

ACTIVATION_MEANING = "QA approval of specification"


def load_spec(session: Session, actor: User, spec: SpecFile, source_name: str) -> Specification:
    """Store the file as the product's next draft version."""
    require_role(actor, "qa", action="loading a specification")
    product = get_product(session, spec.product)
    content = audit.canonical(spec.model_dump(mode="json"))
    digest = hashlib.sha256(content.encode()).hexdigest()
    same = session.execute(select(Specification).where(
        Specification.product_id == product.id, Specification.content_sha256 == digest)).scalar()
    if same is not None:
        raise RuleViolation(f"specification {product.code} version {same.version} already has "
                            "this content")
    latest = session.execute(select(func.max(Specification.version))
                             .where(Specification.product_id == product.id)).scalar() or 0
    version = Specification(product_id=product.id, version=latest + 1, status="draft",
                            content=content, content_sha256=digest,
                            source_name=source_name[:255], loaded_at=utcnow(),
                            loaded_by_id=actor.id)
    version.product = product
    session.add(version)
    audit.record_row(session, actor, version, "load")
    return version


def get_spec(session: Session, product_code: str, version: int | None = None) -> Specification:
    product = get_product(session, product_code)
    stmt = select(Specification).where(Specification.product_id == product.id)
    stmt = (stmt.where(Specification.version == version) if version is not None
            else stmt.where(Specification.status == "active"))
    spec = session.execute(stmt).scalar_one_or_none()
    if spec is None:
        which = f"version {version}" if version is not None else "an active version"
        raise NotFound(f"product {product_code} has no specification {which}")
    return spec


def activate_spec(session: Session, actor: User, product_code: str, version: int,
                  password: str | None) -> Specification:
    require_role(actor, "qa", action="activating a specification")
    spec = get_spec(session, product_code, version)
    if spec.status != "draft":
        raise RuleViolation(f"specification {product_code} version {version} is {spec.status}, "
                            "not a draft")
    reauthenticate(session, actor, password, ACTIVATION_MEANING)
    for old in session.execute(select(Specification).where(
            Specification.product_id == spec.product_id,
            Specification.status == "active").with_for_update()).scalars():
        before = old.audit_state()
        old.status = "superseded"
        audit.record_row(session, actor, old, "supersede", before,
                         reason=f"version {version} activated")
    before = spec.audit_state()
    spec.status, spec.activated_at = "active", utcnow()
    audit.record_row(session, actor, spec, "activate", before)
    audit.sign(session, actor, ACTIVATION_MEANING, "specification", spec.audit_key,
               spec.audit_state())
    return spec


def spec_content(spec: Specification) -> SpecFile:
    return SpecFile.model_validate_json(spec.content)


def list_specs(session: Session, product: Product) -> list[Specification]:
    return list(session.execute(select(Specification).where(
        Specification.product_id == product.id).order_by(Specification.version)).scalars())
