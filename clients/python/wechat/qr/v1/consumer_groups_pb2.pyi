import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from wechat.qr.v1 import qr_service_pb2 as _qr_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GroupStart(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GROUP_START_UNSPECIFIED: _ClassVar[GroupStart]
    GROUP_START_NOW: _ClassVar[GroupStart]
    GROUP_START_OLDEST: _ClassVar[GroupStart]
GROUP_START_UNSPECIFIED: GroupStart
GROUP_START_NOW: GroupStart
GROUP_START_OLDEST: GroupStart

class ConsumerGroup(_message.Message):
    __slots__ = ("name", "account", "tickets", "scenes", "types", "ack_deadline_seconds", "max_deliveries", "max_unacked_per_member", "create_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    TICKETS_FIELD_NUMBER: _ClassVar[int]
    SCENES_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    ACK_DEADLINE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    MAX_UNACKED_PER_MEMBER_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    account: str
    tickets: _containers.RepeatedScalarFieldContainer[str]
    scenes: _containers.RepeatedScalarFieldContainer[str]
    types: _containers.RepeatedScalarFieldContainer[_qr_service_pb2.EventType]
    ack_deadline_seconds: int
    max_deliveries: int
    max_unacked_per_member: int
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., account: _Optional[str] = ..., tickets: _Optional[_Iterable[str]] = ..., scenes: _Optional[_Iterable[str]] = ..., types: _Optional[_Iterable[_Union[_qr_service_pb2.EventType, str]]] = ..., ack_deadline_seconds: _Optional[int] = ..., max_deliveries: _Optional[int] = ..., max_unacked_per_member: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateGroupRequest(_message.Message):
    __slots__ = ("name", "account", "tickets", "scenes", "types", "ack_deadline_seconds", "max_deliveries", "max_unacked_per_member", "start", "start_after")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    TICKETS_FIELD_NUMBER: _ClassVar[int]
    SCENES_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    ACK_DEADLINE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    MAX_UNACKED_PER_MEMBER_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    START_AFTER_FIELD_NUMBER: _ClassVar[int]
    name: str
    account: str
    tickets: _containers.RepeatedScalarFieldContainer[str]
    scenes: _containers.RepeatedScalarFieldContainer[str]
    types: _containers.RepeatedScalarFieldContainer[_qr_service_pb2.EventType]
    ack_deadline_seconds: int
    max_deliveries: int
    max_unacked_per_member: int
    start: GroupStart
    start_after: str
    def __init__(self, name: _Optional[str] = ..., account: _Optional[str] = ..., tickets: _Optional[_Iterable[str]] = ..., scenes: _Optional[_Iterable[str]] = ..., types: _Optional[_Iterable[_Union[_qr_service_pb2.EventType, str]]] = ..., ack_deadline_seconds: _Optional[int] = ..., max_deliveries: _Optional[int] = ..., max_unacked_per_member: _Optional[int] = ..., start: _Optional[_Union[GroupStart, str]] = ..., start_after: _Optional[str] = ...) -> None: ...

class CreateGroupResponse(_message.Message):
    __slots__ = ("group", "position")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    group: ConsumerGroup
    position: str
    def __init__(self, group: _Optional[_Union[ConsumerGroup, _Mapping]] = ..., position: _Optional[str] = ...) -> None: ...

class ListGroupsRequest(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: str
    def __init__(self, account: _Optional[str] = ...) -> None: ...

class GroupMember(_message.Message):
    __slots__ = ("name", "unacked")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UNACKED_FIELD_NUMBER: _ClassVar[int]
    name: str
    unacked: int
    def __init__(self, name: _Optional[str] = ..., unacked: _Optional[int] = ...) -> None: ...

class GroupStatus(_message.Message):
    __slots__ = ("group", "position", "pending", "lag", "dead_letters", "redeliveries", "members")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    REDELIVERIES_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    group: ConsumerGroup
    position: str
    pending: int
    lag: int
    dead_letters: int
    redeliveries: int
    members: _containers.RepeatedCompositeFieldContainer[GroupMember]
    def __init__(self, group: _Optional[_Union[ConsumerGroup, _Mapping]] = ..., position: _Optional[str] = ..., pending: _Optional[int] = ..., lag: _Optional[int] = ..., dead_letters: _Optional[int] = ..., redeliveries: _Optional[int] = ..., members: _Optional[_Iterable[_Union[GroupMember, _Mapping]]] = ...) -> None: ...

class ListGroupsResponse(_message.Message):
    __slots__ = ("groups",)
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[GroupStatus]
    def __init__(self, groups: _Optional[_Iterable[_Union[GroupStatus, _Mapping]]] = ...) -> None: ...

class DeleteGroupRequest(_message.Message):
    __slots__ = ("name", "account")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    name: str
    account: str
    def __init__(self, name: _Optional[str] = ..., account: _Optional[str] = ...) -> None: ...

class DeleteGroupResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SeekGroupRequest(_message.Message):
    __slots__ = ("name", "account", "cursor", "time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    account: str
    cursor: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., account: _Optional[str] = ..., cursor: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SeekGroupResponse(_message.Message):
    __slots__ = ("position",)
    POSITION_FIELD_NUMBER: _ClassVar[int]
    position: str
    def __init__(self, position: _Optional[str] = ...) -> None: ...

class ConsumeGroupRequest(_message.Message):
    __slots__ = ("group", "account", "member", "ack_ids", "extend_ack_ids", "extend_seconds", "nack_ids")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    ACK_IDS_FIELD_NUMBER: _ClassVar[int]
    EXTEND_ACK_IDS_FIELD_NUMBER: _ClassVar[int]
    EXTEND_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NACK_IDS_FIELD_NUMBER: _ClassVar[int]
    group: str
    account: str
    member: str
    ack_ids: _containers.RepeatedScalarFieldContainer[str]
    extend_ack_ids: _containers.RepeatedScalarFieldContainer[str]
    extend_seconds: int
    nack_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, group: _Optional[str] = ..., account: _Optional[str] = ..., member: _Optional[str] = ..., ack_ids: _Optional[_Iterable[str]] = ..., extend_ack_ids: _Optional[_Iterable[str]] = ..., extend_seconds: _Optional[int] = ..., nack_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GroupDelivery(_message.Message):
    __slots__ = ("event", "ack_id", "delivery_count", "deadline")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    ACK_ID_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_COUNT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    event: _qr_service_pb2.Event
    ack_id: str
    delivery_count: int
    deadline: _timestamp_pb2.Timestamp
    def __init__(self, event: _Optional[_Union[_qr_service_pb2.Event, _Mapping]] = ..., ack_id: _Optional[str] = ..., delivery_count: _Optional[int] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ConsumeGroupResponse(_message.Message):
    __slots__ = ("deliveries", "acked_ids")
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    ACKED_IDS_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[GroupDelivery]
    acked_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, deliveries: _Optional[_Iterable[_Union[GroupDelivery, _Mapping]]] = ..., acked_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ReceiveGroupRequest(_message.Message):
    __slots__ = ("group", "account", "member")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    group: str
    account: str
    member: str
    def __init__(self, group: _Optional[str] = ..., account: _Optional[str] = ..., member: _Optional[str] = ...) -> None: ...

class ReceiveGroupResponse(_message.Message):
    __slots__ = ("deliveries",)
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[GroupDelivery]
    def __init__(self, deliveries: _Optional[_Iterable[_Union[GroupDelivery, _Mapping]]] = ...) -> None: ...

class AckGroupEventsRequest(_message.Message):
    __slots__ = ("group", "account", "ack_ids", "extend_ack_ids", "extend_seconds", "nack_ids")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    ACK_IDS_FIELD_NUMBER: _ClassVar[int]
    EXTEND_ACK_IDS_FIELD_NUMBER: _ClassVar[int]
    EXTEND_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NACK_IDS_FIELD_NUMBER: _ClassVar[int]
    group: str
    account: str
    ack_ids: _containers.RepeatedScalarFieldContainer[str]
    extend_ack_ids: _containers.RepeatedScalarFieldContainer[str]
    extend_seconds: int
    nack_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, group: _Optional[str] = ..., account: _Optional[str] = ..., ack_ids: _Optional[_Iterable[str]] = ..., extend_ack_ids: _Optional[_Iterable[str]] = ..., extend_seconds: _Optional[int] = ..., nack_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class AckGroupEventsResponse(_message.Message):
    __slots__ = ("acked",)
    ACKED_FIELD_NUMBER: _ClassVar[int]
    acked: int
    def __init__(self, acked: _Optional[int] = ...) -> None: ...

class ListDeadLettersRequest(_message.Message):
    __slots__ = ("name", "account", "page_size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    account: str
    page_size: int
    def __init__(self, name: _Optional[str] = ..., account: _Optional[str] = ..., page_size: _Optional[int] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("event", "cursor", "delivery_count", "dead_time")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_COUNT_FIELD_NUMBER: _ClassVar[int]
    DEAD_TIME_FIELD_NUMBER: _ClassVar[int]
    event: _qr_service_pb2.Event
    cursor: str
    delivery_count: int
    dead_time: _timestamp_pb2.Timestamp
    def __init__(self, event: _Optional[_Union[_qr_service_pb2.Event, _Mapping]] = ..., cursor: _Optional[str] = ..., delivery_count: _Optional[int] = ..., dead_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListDeadLettersResponse(_message.Message):
    __slots__ = ("dead_letters", "total")
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    dead_letters: _containers.RepeatedCompositeFieldContainer[DeadLetter]
    total: int
    def __init__(self, dead_letters: _Optional[_Iterable[_Union[DeadLetter, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class ReplayDeadLettersRequest(_message.Message):
    __slots__ = ("name", "account", "cursors")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    CURSORS_FIELD_NUMBER: _ClassVar[int]
    name: str
    account: str
    cursors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., account: _Optional[str] = ..., cursors: _Optional[_Iterable[str]] = ...) -> None: ...

class ReplayDeadLettersResponse(_message.Message):
    __slots__ = ("replayed",)
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    replayed: int
    def __init__(self, replayed: _Optional[int] = ...) -> None: ...
