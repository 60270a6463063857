import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Bucket(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUCKET_UNSPECIFIED: _ClassVar[Bucket]
    BUCKET_HOUR: _ClassVar[Bucket]
    BUCKET_DAY: _ClassVar[Bucket]
BUCKET_UNSPECIFIED: Bucket
BUCKET_HOUR: Bucket
BUCKET_DAY: Bucket

class GetSceneStatsRequest(_message.Message):
    __slots__ = ("start_time", "end_time", "bucket", "time_zone", "scenes", "account", "max_scenes")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    SCENES_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    MAX_SCENES_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    bucket: Bucket
    time_zone: str
    scenes: _containers.RepeatedScalarFieldContainer[str]
    account: str
    max_scenes: int
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., bucket: _Optional[_Union[Bucket, str]] = ..., time_zone: _Optional[str] = ..., scenes: _Optional[_Iterable[str]] = ..., account: _Optional[str] = ..., max_scenes: _Optional[int] = ...) -> None: ...

class BucketSpan(_message.Message):
    __slots__ = ("start_time", "end_time")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SceneCounts(_message.Message):
    __slots__ = ("scans", "new_followers", "unique_users", "unfollows")
    SCANS_FIELD_NUMBER: _ClassVar[int]
    NEW_FOLLOWERS_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_USERS_FIELD_NUMBER: _ClassVar[int]
    UNFOLLOWS_FIELD_NUMBER: _ClassVar[int]
    scans: int
    new_followers: int
    unique_users: int
    unfollows: int
    def __init__(self, scans: _Optional[int] = ..., new_followers: _Optional[int] = ..., unique_users: _Optional[int] = ..., unfollows: _Optional[int] = ...) -> None: ...

class SceneStats(_message.Message):
    __slots__ = ("scene", "buckets", "totals")
    SCENE_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    scene: str
    buckets: _containers.RepeatedCompositeFieldContainer[SceneCounts]
    totals: SceneCounts
    def __init__(self, scene: _Optional[str] = ..., buckets: _Optional[_Iterable[_Union[SceneCounts, _Mapping]]] = ..., totals: _Optional[_Union[SceneCounts, _Mapping]] = ...) -> None: ...

class GetSceneStatsResponse(_message.Message):
    __slots__ = ("buckets", "scenes", "omitted_scenes", "cursor", "time_zone")
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    SCENES_FIELD_NUMBER: _ClassVar[int]
    OMITTED_SCENES_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    buckets: _containers.RepeatedCompositeFieldContainer[BucketSpan]
    scenes: _containers.RepeatedCompositeFieldContainer[SceneStats]
    omitted_scenes: int
    cursor: str
    time_zone: str
    def __init__(self, buckets: _Optional[_Iterable[_Union[BucketSpan, _Mapping]]] = ..., scenes: _Optional[_Iterable[_Union[SceneStats, _Mapping]]] = ..., omitted_scenes: _Optional[int] = ..., cursor: _Optional[str] = ..., time_zone: _Optional[str] = ...) -> None: ...

class ListScenesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "account")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    account: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., account: _Optional[str] = ...) -> None: ...

class SceneSummary(_message.Message):
    __slots__ = ("scene", "totals", "first_activity_time", "last_activity_time")
    SCENE_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    FIRST_ACTIVITY_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVITY_TIME_FIELD_NUMBER: _ClassVar[int]
    scene: str
    totals: SceneCounts
    first_activity_time: _timestamp_pb2.Timestamp
    last_activity_time: _timestamp_pb2.Timestamp
    def __init__(self, scene: _Optional[str] = ..., totals: _Optional[_Union[SceneCounts, _Mapping]] = ..., first_activity_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_activity_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListScenesResponse(_message.Message):
    __slots__ = ("scenes", "next_page_token")
    SCENES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    scenes: _containers.RepeatedCompositeFieldContainer[SceneSummary]
    next_page_token: str
    def __init__(self, scenes: _Optional[_Iterable[_Union[SceneSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
