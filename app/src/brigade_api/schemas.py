"""Request and response models (pydantic v2).

Inputs forbid unknown fields, bound every string and number, and reject control
characters and lone surrogates (PostgreSQL cannot store NUL bytes or invalid
UTF-8), so bad input is a 422 naming the field rather than a database error.
Money is ``Decimal`` with two places and is serialised as a string.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)

from brigade_api.models import OrderStatus, Role

USERNAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{2,63}")
PUBLIC_CODE_RE = r"^[A-Za-z0-9]{4,16}$"
MAX_INT = 2**31 - 1
CENT = Decimal("0.01")


def _text_checker(*, multiline: bool) -> AfterValidator:
    allowed = {"\n", "\t"} if multiline else set()

    def check(value: str) -> str:
        for char in value:
            category = unicodedata.category(char)
            if category == "Cs" or (category == "Cc" and char not in allowed):
                raise ValueError("must not contain control characters or invalid unicode")
        return value

    return AfterValidator(check)


SingleLine = _text_checker(multiline=False)
MultiLine = _text_checker(multiline=True)


def _bounds(max_length: int, min_length: int = 1) -> StringConstraints:
    return StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length)


Name100 = Annotated[str, _bounds(100), SingleLine]
Name120 = Annotated[str, _bounds(120), SingleLine]
TableName = Annotated[str, _bounds(32), SingleLine]
Description = Annotated[str, _bounds(1000, 0), MultiLine]
OrderNote = Annotated[str, _bounds(500, 0), MultiLine]
LineNote = Annotated[str, _bounds(200, 0), SingleLine]


def _lower_username(value: str) -> str:
    value = value.lower()
    if not USERNAME_RE.fullmatch(value):
        raise ValueError("must be 3-64 characters of a-z, 0-9, '.', '_' or '-'")
    return value


Username = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=64), AfterValidator(_lower_username)
]
NewPassword = Annotated[str, StringConstraints(min_length=12, max_length=256), SingleLine]
LoginPassword = Annotated[str, StringConstraints(min_length=1, max_length=1024)]

Id = Annotated[int, Field(ge=1, le=MAX_INT)]


def _two_places(value: Decimal) -> Decimal:
    return value.quantize(CENT)


Money = Annotated[
    Decimal,
    PlainSerializer(lambda v: f"{v.quantize(CENT)}", return_type=str, when_used="always"),
    WithJsonSchema(
        {"type": "string", "pattern": r"^-?\d+\.\d{2}$", "examples": ["12.50"]},
        mode="serialization",
    ),
]
PriceIn = Annotated[
    Decimal,
    Field(ge=0, le=Decimal("99999999.99"), max_digits=10, decimal_places=2),
    AfterValidator(_two_places),
]


class InputModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OutputModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# -- errors ---------------------------------------------------------------------
class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the offending field, e.g. lines.0.quantity")
    location: str = Field(description="body, query, path or header")
    message: str
    type: str


class ErrorResponse(BaseModel):
    error: str = Field(description="Machine-readable error code")
    detail: str = Field(description="Human-readable explanation")
    request_id: str | None = None
    fields: list[FieldError] = Field(default_factory=list)


# -- health ---------------------------------------------------------------------
class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    status: str
    checks: dict[str, str]
    reason: str | None = None


class VersionOut(BaseModel):
    name: str
    version: str
    release_id: str
    schema_revision: str | None


# -- auth & users ---------------------------------------------------------------
class TokenRequest(InputModel):
    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    password: LoginPassword


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - not a secret
    expires_in: int


class UserCreate(InputModel):
    username: Username
    password: NewPassword
    role: Role = Role.staff


class UserUpdate(InputModel):
    password: NewPassword | None = None
    role: Role | None = None
    is_active: bool | None = None


class PasswordChange(InputModel):
    current_password: LoginPassword
    new_password: NewPassword


class UserOut(OutputModel):
    id: int
    username: str
    role: Role
    is_active: bool
    created_at: datetime
    updated_at: datetime


# -- menu -----------------------------------------------------------------------
class CategoryCreate(InputModel):
    name: Name100
    position: Annotated[int, Field(ge=0, le=10000)] = 0


class CategoryUpdate(InputModel):
    name: Name100 | None = None
    position: Annotated[int, Field(ge=0, le=10000)] | None = None


class CategoryOut(OutputModel):
    id: int
    name: str
    position: int


class ItemCreate(InputModel):
    category_id: Id
    name: Name120
    description: Description = ""
    price: PriceIn
    is_available: bool = True
    position: Annotated[int, Field(ge=0, le=10000)] = 0


class ItemUpdate(InputModel):
    category_id: Id | None = None
    name: Name120 | None = None
    description: Description | None = None
    price: PriceIn | None = None
    is_available: bool | None = None
    position: Annotated[int, Field(ge=0, le=10000)] | None = None


class ItemOut(OutputModel):
    id: int
    category_id: int
    name: str
    description: str
    price: Money
    is_available: bool
    position: int


class PublicMenuItem(OutputModel):
    id: int
    name: str
    description: str
    price: Money
    is_available: bool


class PublicMenuCategory(OutputModel):
    id: int
    name: str
    items: list[PublicMenuItem]


class PublicMenu(BaseModel):
    revision: int
    categories: list[PublicMenuCategory]


# -- tables ---------------------------------------------------------------------
class TableCreate(InputModel):
    name: TableName
    seats: Annotated[int, Field(ge=1, le=100)] = 4
    is_active: bool = True


class TableUpdate(InputModel):
    name: TableName | None = None
    seats: Annotated[int, Field(ge=1, le=100)] | None = None
    is_active: bool | None = None


class TableOut(OutputModel):
    id: int
    name: str
    seats: int
    is_active: bool


# -- orders ---------------------------------------------------------------------
class OrderLineIn(InputModel):
    menu_item_id: Id
    quantity: Annotated[int, Field(ge=1, le=99)] = 1
    note: LineNote = ""


class OrderCreate(InputModel):
    table_id: Id | None = None
    note: OrderNote = ""
    lines: Annotated[list[OrderLineIn], Field(min_length=1, max_length=50)]


class StatusChange(InputModel):
    status: OrderStatus


class OrderLineOut(OutputModel):
    id: int
    menu_item_id: int | None
    item_name: str
    unit_price: Money
    quantity: int
    note: str
    line_total: Money


class OrderOut(OutputModel):
    id: int
    public_code: str
    table_id: int | None
    status: OrderStatus
    note: str
    total: Money
    created_by_id: int | None
    created_at: datetime
    updated_at: datetime
    lines: list[OrderLineOut]


class PublicOrderLine(OutputModel):
    item_name: str
    quantity: int


class PublicOrderStatus(BaseModel):
    code: str
    status: OrderStatus
    total: Money
    created_at: datetime
    updated_at: datetime
    lines: list[PublicOrderLine]


class OrderPage(BaseModel):
    items: list[OrderOut]
    limit: int
    offset: int
