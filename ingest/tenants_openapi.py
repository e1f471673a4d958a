"""The schemas of the tenant and key routes (ingest.tenants_api): they validate the
requests (through ingest.openapi) and describe them in the document."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ingest.console.portal import DEFAULT_SECONDS, MAX_SECONDS
from ingest.openapi import Cursor, limit_field, next_after, register
from shared.providers import SOURCES

_NAME = fields.Str(required=True, validate=validate.Length(min=1, max=200))


class SenderSchema(Schema):
    source = fields.Str(required=True, validate=validate.OneOf(sorted(SOURCES)))
    sender = fields.Str(required=True, validate=validate.Length(min=1, max=200), metadata={
        "description": "The agent / sender id / service code its events carry"})
    channel = fields.Str(load_default=None, allow_none=True,
                         validate=validate.Length(min=1, max=50))


class TenantCreateSchema(Schema):
    name = _NAME
    senders = fields.List(fields.Nested(SenderSchema), load_default=list, metadata={
        "description": "Events carrying one of these (without a callback key) are the "
                       "tenant's; a sender belongs to one tenant"})


class TenantPatchSchema(Schema):
    name = fields.Str(validate=validate.Length(min=1, max=200))
    senders = fields.List(fields.Nested(SenderSchema), metadata={
        "description": "Replaces the whole list"})


class TenantSchema(Schema):
    id = fields.Str(required=True)
    name = fields.Str(required=True)
    senders = fields.List(fields.Nested(SenderSchema), required=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class TenantPageSchema(Schema):
    items = fields.List(fields.Nested(TenantSchema), required=True)
    next_after = next_after()


class TenantQuerySchema(Schema):
    limit = limit_field()
    after = Cursor(numeric=False)


class KeyCreateSchema(Schema):
    name = _NAME
    kind = fields.Str(required=True, validate=validate.OneOf(("api", "callback")), metadata={
        "description": "api: reads and changes this tenant's data under /v1; callback: "
                       "authenticates provider callbacks, whose events become this tenant's"})


class OperatorKeyCreateSchema(Schema):
    name = _NAME


class KeySchema(Schema):
    id = fields.Str(required=True)
    tenant_id = fields.Str(required=True, allow_none=True)
    name = fields.Str(required=True)
    kind = fields.Str(required=True)
    created_at = fields.DateTime(required=True)
    last_used_at = fields.DateTime(required=True, allow_none=True)
    revoked_at = fields.DateTime(required=True, allow_none=True)


class KeyWithSecretSchema(KeySchema):
    key = fields.Str(required=True, metadata={"description": "Shown only here; stored hashed"})


class KeyListSchema(Schema):
    items = fields.List(fields.Nested(KeySchema), required=True)


class PortalLinkCreateSchema(Schema):
    expires_in = fields.Int(load_default=DEFAULT_SECONDS,
                            validate=validate.Range(min=60, max=MAX_SECONDS), metadata={
                                "description": "Seconds the link (and the session it opens) "
                                               f"lasts; default {DEFAULT_SECONDS}"})


class PortalLinkSchema(Schema):
    url = fields.Str(required=True)
    expires_at = fields.DateTime(required=True)


_TENANT = "/v1/tenants/<tenant_id>"
register("POST", "/v1/tenants", "Create a tenant (operator only)", status=201,
         body=TenantCreateSchema, response=TenantSchema, errors=(403, 409), tag="tenants",
         description="409 when another tenant owns one of the senders.")
register("GET", "/v1/tenants", "Tenants, oldest first, keyset-paged (operator only)",
         query=TenantQuerySchema, response=TenantPageSchema, errors=(403,), tag="tenants")
register("GET", _TENANT, "One tenant (operator only)", response=TenantSchema,
         errors=(403, 404), tag="tenants")
register("PATCH", _TENANT, "Rename a tenant or replace its senders (operator only)",
         body=TenantPatchSchema, response=TenantSchema, errors=(403, 404, 409), tag="tenants")
register("DELETE", _TENANT, "Delete a tenant and its keys (operator only)", status=204,
         errors=(403, 404, 409), tag="tenants",
         description="409 while it owns endpoints. Its events stay, seen by the operator only.")
register("POST", f"{_TENANT}/keys", "Make a tenant key (shown once)", status=201,
         body=KeyCreateSchema, response=KeyWithSecretSchema, errors=(403, 404), tag="keys")
register("GET", f"{_TENANT}/keys", "A tenant's keys, without their secrets",
         response=KeyListSchema, errors=(403, 404), tag="keys")
register("DELETE", f"{_TENANT}/keys/<key_id>", "Revoke a tenant key at once", status=204,
         errors=(403, 404), tag="keys")
register("POST", "/v1/keys", "Make an operator key (shown once)", status=201,
         body=OperatorKeyCreateSchema, response=KeyWithSecretSchema, errors=(403,), tag="keys")
register("GET", "/v1/keys", "The operator keys, without their secrets",
         response=KeyListSchema, errors=(403,), tag="keys")
register("DELETE", "/v1/keys/<key_id>", "Revoke an operator key at once", status=204,
         errors=(403, 404), tag="keys")
register("POST", f"{_TENANT}/portal-links", "A link opening the tenant's console, no key",
         status=201, body=PortalLinkCreateSchema,
         response=PortalLinkSchema, errors=(403, 404), tag="tenants",
         description="Signed, and void after expires_at; 404 when the console is off. "
                     "The body may be {} (an hour).")
