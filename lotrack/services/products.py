"""Products: the active substance, the placebo, vehicles (master data kept by QA)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from lotrack import audit
from lotrack.errors import NotFound, RuleViolation
from lotrack.models import Product, User
from lotrack.models.base import utcnow
from lotrack.schemas.lots import ProductIn
from lotrack.services.roles import require_role


def add_product(session: Session, actor: User, product_in: ProductIn) -> Product:
    require_role(actor, "qa", action="adding a product")
    if session.execute(select(Product.id).where(Product.code == product_in.code)).first():
        raise RuleViolation(f"product {product_in.code} already exists")
    if product_in.gtin and session.execute(
            select(Product.code).where(Product.gtin == product_in.gtin)).first():
        raise RuleViolation(f"GTIN {product_in.gtin} already belongs to another product")
    product = Product(**product_in.model_dump(), created_at=utcnow(), created_by_id=actor.id)
    session.add(product)
    audit.record_row(session, actor, product, "create")
    return product


def get_product(session: Session, code: str) -> Product:
    product = session.execute(select(Product).where(Product.code == code)).scalar_one_or_none()
    if product is None:
        raise NotFound(f"no product {code!r}")
    return product


def list_products(session: Session) -> list[Product]:
    return list(session.execute(select(Product).order_by(Product.code)).scalars())
