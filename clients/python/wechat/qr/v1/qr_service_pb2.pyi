import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_SUBSCRIBE: _ClassVar[EventType]
    EVENT_TYPE_SCAN: _ClassVar[EventType]
    EVENT_TYPE_UNSUBSCRIBE: _ClassVar[EventType]
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_SUBSCRIBE: EventType
EVENT_TYPE_SCAN: EventType
EVENT_TYPE_UNSUBSCRIBE: EventType

class CreateTicketRequest(_message.Message):
    __slots__ = ("scene_id", "scene_str", "permanent", "expire_seconds", "account")
    SCENE_ID_FIELD_NUMBER: _ClassVar[int]
    SCENE_STR_FIELD_NUMBER: _ClassVar[int]
    PERMANENT_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    scene_id: int
    scene_str: str
    permanent: bool
    expire_seconds: int
    account: str
    def __init__(self, scene_id: _Optional[int] = ..., scene_str: _Optional[str] = ..., permanent: _Optional[bool] = ..., expire_seconds: _Optional[int] = ..., account: _Optional[str] = ...) -> None: ...

class CreateTicketResponse(_message.Message):
    __slots__ = ("ticket", "url", "expire_time", "image_url")
    TICKET_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_URL_FIELD_NUMBER: _ClassVar[int]
    ticket: str
    url: str
    expire_time: _timestamp_pb2.Timestamp
    image_url: str
    def __init__(self, ticket: _Optional[str] = ..., url: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., image_url: _Optional[str] = ...) -> None: ...

class GetImageRequest(_message.Message):
    __slots__ = ("ticket", "url_only", "account")
    TICKET_FIELD_NUMBER: _ClassVar[int]
    URL_ONLY_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    ticket: str
    url_only: bool
    account: str
    def __init__(self, ticket: _Optional[str] = ..., url_only: _Optional[bool] = ..., account: _Optional[str] = ...) -> None: ...

class GetImageResponse(_message.Message):
    __slots__ = ("image", "content_type", "image_url")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_URL_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    content_type: str
    image_url: str
    def __init__(self, image: _Optional[bytes] = ..., content_type: _Optional[str] = ..., image_url: _Optional[str] = ...) -> None: ...

class StreamEventsRequest(_message.Message):
    __slots__ = ("tickets", "scenes", "types", "resume_after", "accounts")
    TICKETS_FIELD_NUMBER: _ClassVar[int]
    SCENES_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    RESUME_AFTER_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    tickets: _containers.RepeatedScalarFieldContainer[str]
    scenes: _containers.RepeatedScalarFieldContainer[str]
    types: _containers.RepeatedScalarFieldContainer[EventType]
    resume_after: str
    accounts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tickets: _Optional[_Iterable[str]] = ..., scenes: _Optional[_Iterable[str]] = ..., types: _Optional[_Iterable[_Union[EventType, str]]] = ..., resume_after: _Optional[str] = ..., accounts: _Optional[_Iterable[str]] = ...) -> None: ...

class StreamEventsResponse(_message.Message):
    __slots__ = ("event", "cursor")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    event: Event
    cursor: str
    def __init__(self, event: _Optional[_Union[Event, _Mapping]] = ..., cursor: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("type", "openid", "scene", "ticket", "account", "create_time", "received_time", "new_follower", "app_id")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    OPENID_FIELD_NUMBER: _ClassVar[int]
    SCENE_FIELD_NUMBER: _ClassVar[int]
    TICKET_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_TIME_FIELD_NUMBER: _ClassVar[int]
    NEW_FOLLOWER_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    type: EventType
    openid: str
    scene: str
    ticket: str
    account: str
    create_time: _timestamp_pb2.Timestamp
    received_time: _timestamp_pb2.Timestamp
    new_follower: bool
    app_id: str
    def __init__(self, type: _Optional[_Union[EventType, str]] = ..., openid: _Optional[str] = ..., scene: _Optional[str] = ..., ticket: _Optional[str] = ..., account: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., received_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., new_follower: _Optional[bool] = ..., app_id: _Optional[str] = ...) -> None: ...
