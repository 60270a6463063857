package wechat.qr.v1;

import static io.grpc.MethodDescriptor.generateFullMethodName;

/**
 * <pre>
 * ConsumerGroupService creates groups, serves their members, and lets ops see
 * and move them. Groups are scoped by account (AppID): a client of the
 * `[[clients]]` list allowed one account cannot create, join or read a group of
 * another (PERMISSION_DENIED).
 * Errors: INVALID_ARGUMENT names the field first; an unknown group is
 * NOT_FOUND; creating a group that exists is ALREADY_EXISTS.
 * </pre>
 */
@javax.annotation.Generated(
    value = "by gRPC proto compiler",
    comments = "Source: wechat/qr/v1/consumer_groups.proto")
@io.grpc.stub.annotations.GrpcGenerated
public final class ConsumerGroupServiceGrpc {

  private ConsumerGroupServiceGrpc() {}

  public static final String SERVICE_NAME = "wechat.qr.v1.ConsumerGroupService";

  // Static method descriptors that strictly reflect the proto.
  private static volatile io.grpc.MethodDescriptor<wechat.qr.v1.ConsumerGroups.CreateGroupRequest,
      wechat.qr.v1.ConsumerGroups.CreateGroupResponse> getCreateGroupMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "CreateGroup",
      requestType = wechat.qr.v1.ConsumerGroups.CreateGroupRequest.class,
      responseType = wechat.qr.v1.ConsumerGroups.CreateGroupResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<wechat.qr.v1.ConsumerGroups.CreateGroupRequest,
      wechat.qr.v1.ConsumerGroups.CreateGroupResponse> getCreateGroupMethod() {
    io.grpc.MethodDescriptor<wechat.qr.v1.ConsumerGroups.CreateGroupRequest, wechat.qr.v1.ConsumerGroups.CreateGroupResponse> getCreateGroupMethod;
    if ((getCreateGroupMethod = ConsumerGroupServiceGrpc.getCreateGroupMethod) == null) {
      synchronized (ConsumerGroupServiceGrpc.class) {
        if ((getCreateGroupMethod = ConsumerGroupServiceGrpc.getCreateGroupMethod) == null) {
          ConsumerGroupServiceGrpc.getCreateGroupMethod = getCreateGroupMethod =
              io.grpc.MethodDescriptor.<wechat.qr.v1.ConsumerGroups.CreateGroupRequest, wechat.qr.v1.ConsumerGroups.CreateGroupResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "CreateGroup"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  wechat.qr.v1.ConsumerGroups.CreateGroupRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  wechat.qr.v1.ConsumerGroups.CreateGroupResponse.getDefaultInstance()))
              .setSchemaDescriptor(new ConsumerGroupServiceMethodDescriptorSupplier("CreateGroup"))
              .build();
        }
      }
    }
    return getCreateGroupMethod;
  }

  private static volatile io.grpc.MethodDescriptor<wechat.qr.v1.ConsumerGroups.ListGroupsRequest,
      wechat.qr.v1.ConsumerGroups.ListGroupsResponse> getListGroupsMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "ListGroups",
      requestType = wechat.qr.v1.ConsumerGroups.ListGroupsRequest.class,
      responseType = wechat.qr.v1.ConsumerGroups.ListGroupsResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<wechat.qr.v1.ConsumerGroups.ListGroupsRequest,
      wechat.qr.v1.ConsumerGroups.ListGroupsResponse> getListGroupsMethod() {
    io.grpc.MethodDescriptor<wechat.qr.v1.ConsumerGroups.ListGroupsRequest, wechat.qr.v1.ConsumerGroups.ListGroupsResponse> getListGroupsMethod;
    if ((getListGroupsMethod = ConsumerGroupServiceGrpc.getListGroupsMethod) == null) {
      synchronized (ConsumerGroupServiceGrpc.class) {
        if ((getListGroupsMethod = ConsumerGroupServiceGrpc.getListGroupsMethod) == null) {
          ConsumerGroupServiceGrpc.getListGroupsMethod = getListGroupsMethod =
              io.grpc.MethodDescriptor.<wechat.qr.v1.ConsumerGroups.ListGroupsRequest, wechat.qr.v1.ConsumerGroups.ListGroupsResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "ListGroups"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  wechat.qr.v1.ConsumerGroups.ListGroupsRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  wechat.qr.v1.ConsumerGroups.ListGroupsResponse.getDefaultInstance()))
              .setSchemaDescriptor(new ConsumerGroupServiceMethodDescriptorSupplier("ListGroups"))
              .build();
        }
      }
    }
    return getListGroupsMethod;
  }

  private static volatile io.grpc.MethodDescriptor<wechat.qr.v1.ConsumerGroups.DeleteGroupRequest,
      wechat.qr.v1.ConsumerGroups.DeleteGroupResponse> getDeleteGroupMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "DeleteGroup",
      requestType = wechat.qr.v1.ConsumerGroups.DeleteGroupRequest.class,
      responseType = wechat.qr.v1.ConsumerGroups.DeleteGroupResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<wechat.qr.v1.ConsumerGroups.DeleteGroupRequest,
      wechat.qr.v1.ConsumerGroups.DeleteGroupResponse> getDeleteGroupMethod() {
    io.grpc.MethodDescriptor<wechat.qr.v1.ConsumerGroups.DeleteGroupRequest, wechat.qr.v1.ConsumerGroups.DeleteGroupResponse> getDeleteGroupMethod;
    if ((getDeleteGroupMethod = ConsumerGroupServiceGrpc.getDeleteGroupMethod) == null) {
      synchronized (ConsumerGroupServiceGrpc.class) {
        if ((getDeleteGroupMethod = ConsumerGroupServiceGrpc.getDeleteGroupMethod) == null) {
          ConsumerGroupServiceGrpc.getDeleteGroupMethod = getDeleteGroupMethod =
              io.grpc.MethodDescriptor.<wechat.qr.v1.ConsumerGroups.DeleteGroupRequest, wechat.qr.v1.ConsumerGroups.DeleteGroupResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "DeleteGroup"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  wechat.qr.v1.ConsumerGroups.DeleteGroupRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  wechat.qr.v1.ConsumerGroups.DeleteGroupResponse.getDefaultInstance()))
              .setSchemaDescriptor(new ConsumerGroupServiceMethodDescriptorSupplier("DeleteGroup"))
              .build();
        }
      }
    }
    return getDeleteGroupMethod;
  }

  private static volatile io.grpc.MethodDescriptor<wechat.qr.v1.ConsumerGroups.SeekGroupRequest,
      wechat.qr.v1.ConsumerGroups.SeekGroupResponse> getSeekGroupMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "SeekGroup",
      requestType = wechat.qr.v1.ConsumerGroups.SeekGroupRequest.class,
      responseType = wechat.qr.v1.ConsumerGroups.SeekGroupResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<wechat.qr.v1.ConsumerGroups.SeekGroupRequest,
      wechat.qr.v1.ConsumerGroups.SeekGroupResponse> getSeekGroupMethod() {
    io.grpc.MethodDescriptor<wechat.qr.v1.ConsumerGroups.SeekGroupRequest, wechat.qr.v1.ConsumerGroups.SeekGroupResponse> getSeekGroupMethod;
    if ((getSeekGroupMethod = ConsumerGroupServiceGrpc.getSeekGroupMethod) == null) {
      synchronized (ConsumerGroupServiceGrpc.class) {
        if ((getSeekGroupMethod = ConsumerGroupServiceGrpc.getSeekGroupMethod) == null) {
          ConsumerGroupServiceGrpc.getSeekGroupMethod = getSeekGroupMethod =
              io.grpc.MethodDescriptor.<wechat.qr.v1.ConsumerGroups.SeekGroupRequest, wechat.qr.v1.ConsumerGroups.SeekGroupResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "SeekGroup"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  wechat.qr.v1.ConsumerGroups.SeekGroupRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  wechat.qr.v1.ConsumerGroups.SeekGroupResponse.getDefaultInstance()))
              .setSchemaDescriptor(new ConsumerGroupServiceMethodDescriptorSupplier("SeekGroup"))
              .build();
        }
      }
    }
    return getSeekGroupMethod;
  }

  private static volatile io.grpc.MethodDescriptor<wechat.qr.v1.ConsumerGroups.ConsumeGroupRequest,
      wechat.qr.v1.ConsumerGroups.ConsumeGroupResponse> getConsumeGroupMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "ConsumeGroup",
      requestType = wechat.qr.v1.ConsumerGroups.ConsumeGroupRequest.class,
      responseType = wechat.qr.v1.ConsumerGroups.ConsumeGroupResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.BIDI_STREAMING)
  public static io.grpc.MethodDescriptor<wechat.qr.v1.ConsumerGroups.ConsumeGroupRequest,
      wechat.qr.v1.ConsumerGroups.ConsumeGroupResponse> getConsumeGroupMethod() {
    io.grpc.MethodDescriptor<wechat.qr.v1.ConsumerGroups.ConsumeGroupRequest, wechat.qr.v1.ConsumerGroups.ConsumeGroupResponse> getConsumeGroupMethod;
    if ((getConsumeGroupMethod = ConsumerGroupServiceGrpc.getConsumeGroupMethod) == null) {
      synchronized (ConsumerGroupServiceGrpc.class) {
        if ((getConsumeGroupMethod = ConsumerGroupServiceGrpc.getConsumeGroupMethod) == null) {
          ConsumerGroupServiceGrpc.getConsumeGroupMethod = getConsumeGroupMethod =
              io.grpc.MethodDescriptor.<wechat.qr.v1.ConsumerGroups.ConsumeGroupRequest, wechat.qr.v1.ConsumerGroups.ConsumeGroupResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.BIDI_STREAMING)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "ConsumeGroup"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  wechat.qr.v1.ConsumerGroups.ConsumeGroupRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  wechat.qr.v1.ConsumerGroups.ConsumeGroupResponse.getDefaultInstance()))
              .setSchemaDescriptor(new ConsumerGroupServiceMethodDescriptorSupplier("ConsumeGroup"))
              .build();
        }
      }
    }
    return getConsumeGroupMethod;
  }

  private static volatile io.grpc.MethodDescriptor<wechat.qr.v1.ConsumerGroups.ReceiveGroupRequest,
      wechat.qr.v1.ConsumerGroups.ReceiveGroupResponse> getReceiveGroupMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "ReceiveGroup",
      requestType = wechat.qr.v1.ConsumerGroups.ReceiveGroupRequest.class,
      responseType = wechat.qr.v1.ConsumerGroups.ReceiveGroupResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.SERVER_STREAMING)
  public static io.grpc.MethodDescriptor<wechat.qr.v1.ConsumerGroups.ReceiveGroupRequest,
      wechat.qr.v1.ConsumerGroups.ReceiveGroupResponse> getReceiveGroupMethod() {
    io.grpc.MethodDescriptor<wechat.qr.v1.ConsumerGroups.ReceiveGroupRequest, wechat.qr.v1.ConsumerGroups.ReceiveGroupResponse> getReceiveGroupMethod;
    if ((getReceiveGroupMethod = ConsumerGroupServiceGrpc.getReceiveGroupMethod) == null) {
      synchronized (ConsumerGroupServiceGrpc.class) {
        if ((getReceiveGroupMethod = ConsumerGroupServiceGrpc.getReceiveGroupMethod) == null) {
          ConsumerGroupServiceGrpc.getReceiveGroupMethod = getReceiveGroupMethod =
              io.grpc.MethodDescriptor.<wechat.qr.v1.ConsumerGroups.ReceiveGroupRequest, wechat.qr.v1.ConsumerGroups.ReceiveGroupResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.SERVER_STREAMING)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "ReceiveGroup"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  wechat.qr.v1.ConsumerGroups.ReceiveGroupRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  wechat.qr.v1.ConsumerGroups.ReceiveGroupResponse.getDefaultInstance()))
              .setSchemaDescriptor(new ConsumerGroupServiceMethodDescriptorSupplier("ReceiveGroup"))
              .build();
        }
      }
    }
    return getReceiveGroupMethod;
  }

  private static volatile io.grpc.MethodDescriptor<wechat.qr.v1.ConsumerGroups.AckGroupEventsRequest,
      wechat.qr.v1.ConsumerGroups.AckGroupEventsResponse> getAckGroupEventsMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "AckGroupEvents",
      requestType = wechat.qr.v1.ConsumerGroups.AckGroupEventsRequest.class,
      responseType = wechat.qr.v1.ConsumerGroups.AckGroupEventsResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<wechat.qr.v1.ConsumerGroups.AckGroupEventsRequest,
      wechat.qr.v1.ConsumerGroups.AckGroupEventsResponse> getAckGroupEventsMethod() {
    io.grpc.MethodDescriptor<wechat.qr.v1.ConsumerGroups.AckGroupEventsRequest, wechat.qr.v1.ConsumerGroups.AckGroupEventsResponse> getAckGroupEventsMethod;
    if ((getAckGroupEventsMethod = ConsumerGroupServiceGrpc.getAckGroupEventsMethod) == null) {
      synchronized (ConsumerGroupServiceGrpc.class) {
        if ((getAckGroupEventsMethod = ConsumerGroupServiceGrpc.getAckGroupEventsMethod) == null) {
          ConsumerGroupServiceGrpc.getAckGroupEventsMethod = getAckGroupEventsMethod =
              io.grpc.MethodDescriptor.<wechat.qr.v1.ConsumerGroups.AckGroupEventsRequest, wechat.qr.v1.ConsumerGroups.AckGroupEventsResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "AckGroupEvents"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  wechat.qr.v1.ConsumerGroups.AckGroupEventsRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  wechat.qr.v1.ConsumerGroups.AckGroupEventsResponse.getDefaultInstance()))
              .setSchemaDescriptor(new ConsumerGroupServiceMethodDescriptorSupplier("AckGroupEvents"))
              .build();
        }
      }
    }
    return getAckGroupEventsMethod;
  }

  private static volatile io.grpc.MethodDescriptor<wechat.qr.v1.ConsumerGroups.ListDeadLettersRequest,
      wechat.qr.v1.ConsumerGroups.ListDeadLettersResponse> getListDeadLettersMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "ListDeadLetters",
      requestType = wechat.qr.v1.ConsumerGroups.ListDeadLettersRequest.class,
      responseType = wechat.qr.v1.ConsumerGroups.ListDeadLettersResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<wechat.qr.v1.ConsumerGroups.ListDeadLettersRequest,
      wechat.qr.v1.ConsumerGroups.ListDeadLettersResponse> getListDeadLettersMethod() {
    io.grpc.MethodDescriptor<wechat.qr.v1.ConsumerGroups.ListDeadLettersRequest, wechat.qr.v1.ConsumerGroups.ListDeadLettersResponse> getListDeadLettersMethod;
    if ((getListDeadLettersMethod = ConsumerGroupServiceGrpc.getListDeadLettersMethod) == null) {
      synchronized (ConsumerGroupServiceGrpc.class) {
        if ((getListDeadLettersMethod = ConsumerGroupServiceGrpc.getListDeadLettersMethod) == null) {
          ConsumerGroupServiceGrpc.getListDeadLettersMethod = getListDeadLettersMethod =
              io.grpc.MethodDescriptor.<wechat.qr.v1.ConsumerGroups.ListDeadLettersRequest, wechat.qr.v1.ConsumerGroups.ListDeadLettersResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "ListDeadLetters"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  wechat.qr.v1.ConsumerGroups.ListDeadLettersRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  wechat.qr.v1.ConsumerGroups.ListDeadLettersResponse.getDefaultInstance()))
              .setSchemaDescriptor(new ConsumerGroupServiceMethodDescriptorSupplier("ListDeadLetters"))
              .build();
        }
      }
    }
    return getListDeadLettersMethod;
  }

  private static volatile io.grpc.MethodDescriptor<wechat.qr.v1.ConsumerGroups.ReplayDeadLettersRequest,
      wechat.qr.v1.ConsumerGroups.ReplayDeadLettersResponse> getReplayDeadLettersMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "ReplayDeadLetters",
      requestType = wechat.qr.v1.ConsumerGroups.ReplayDeadLettersRequest.class,
      responseType = wechat.qr.v1.ConsumerGroups.ReplayDeadLettersResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<wechat.qr.v1.ConsumerGroups.ReplayDeadLettersRequest,
      wechat.qr.v1.ConsumerGroups.ReplayDeadLettersResponse> getReplayDeadLettersMethod() {
    io.grpc.MethodDescriptor<wechat.qr.v1.ConsumerGroups.ReplayDeadLettersRequest, wechat.qr.v1.ConsumerGroups.ReplayDeadLettersResponse> getReplayDeadLettersMethod;
    if ((getReplayDeadLettersMethod = ConsumerGroupServiceGrpc.getReplayDeadLettersMethod) == null) {
      synchronized (ConsumerGroupServiceGrpc.class) {
        if ((getReplayDeadLettersMethod = ConsumerGroupServiceGrpc.getReplayDeadLettersMethod) == null) {
          ConsumerGroupServiceGrpc.getReplayDeadLettersMethod = getReplayDeadLettersMethod =
              io.grpc.MethodDescriptor.<wechat.qr.v1.ConsumerGroups.ReplayDeadLettersRequest, wechat.qr.v1.ConsumerGroups.ReplayDeadLettersResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "ReplayDeadLetters"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  wechat.qr.v1.ConsumerGroups.ReplayDeadLettersRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  wechat.qr.v1.ConsumerGroups.ReplayDeadLettersResponse.getDefaultInstance()))
              .setSchemaDescriptor(new ConsumerGroupServiceMethodDescriptorSupplier("ReplayDeadLetters"))
              .build();
        }
      }
    }
    return getReplayDeadLettersMethod;
  }

  /**
   * Creates a new async stub that supports all call types for the service
   */
  public static ConsumerGroupServiceStub newStub(io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<ConsumerGroupServiceStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<ConsumerGroupServiceStub>() {
        @java.lang.Override
        public ConsumerGroupServiceStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new ConsumerGroupServiceStub(channel, callOptions);
        }
      };
    return ConsumerGroupServiceStub.newStub(factory, channel);
  }

  /**
   * Creates a new blocking-style stub that supports unary and streaming output calls on the service
   */
  public static ConsumerGroupServiceBlockingStub newBlockingStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<ConsumerGroupServiceBlockingStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<ConsumerGroupServiceBlockingStub>() {
        @java.lang.Override
        public ConsumerGroupServiceBlockingStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new ConsumerGroupServiceBlockingStub(channel, callOptions);
        }
      };
    return ConsumerGroupServiceBlockingStub.newStub(factory, channel);
  }

  /**
   * Creates a new ListenableFuture-style stub that supports unary calls on the service
   */
  public static ConsumerGroupServiceFutureStub newFutureStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<ConsumerGroupServiceFutureStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<ConsumerGroupServiceFutureStub>() {
        @java.lang.Override
        public ConsumerGroupServiceFutureStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new ConsumerGroupServiceFutureStub(channel, callOptions);
        }
      };
    return ConsumerGroupServiceFutureStub.newStub(factory, channel);
  }

  /**
   * <pre>
   * ConsumerGroupService creates groups, serves their members, and lets ops see
   * and move them. Groups are scoped by account (AppID): a client of the
   * `[[clients]]` list allowed one account cannot create, join or read a group of
   * another (PERMISSION_DENIED).
   * Errors: INVALID_ARGUMENT names the field first; an unknown group is
   * NOT_FOUND; creating a group that exists is ALREADY_EXISTS.
   * </pre>
   */
  public static abstract class ConsumerGroupServiceImplBase implements io.grpc.BindableService {

    /**
     * <pre>
     * Creates a group. Its filter, ack deadline, dead-letter threshold and flow
     * control are fixed at creation. An account has at most the service's
     * WECHAT_QR_MAX_GROUPS_PER_ACCOUNT groups (100 by default; with Redis, in the
     * whole deployment): one more is RESOURCE_EXHAUSTED (reason TOO_MANY_GROUPS)
     * and nothing is stored, until a group is deleted.
     * Replicas may all call it as they start: one creates the group, the others
     * get ALREADY_EXISTS, which is answered only once that group can be joined.
     * </pre>
     */
    public void createGroup(wechat.qr.v1.ConsumerGroups.CreateGroupRequest request,
        io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.CreateGroupResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getCreateGroupMethod(), responseObserver);
    }

    /**
     * <pre>
     * Lists the groups of the accounts the caller may see, with lag, pending
     * count and members.
     * </pre>
     */
    public void listGroups(wechat.qr.v1.ConsumerGroups.ListGroupsRequest request,
        io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.ListGroupsResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getListGroupsMethod(), responseObserver);
    }

    /**
     * <pre>
     * Deletes a group: its position, pending events and dead letters go; its
     * members' streams end with NOT_FOUND.
     * </pre>
     */
    public void deleteGroup(wechat.qr.v1.ConsumerGroups.DeleteGroupRequest request,
        io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.DeleteGroupResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getDeleteGroupMethod(), responseObserver);
    }

    /**
     * <pre>
     * Moves a group's position to a cursor or a time. Every pending delivery is
     * dropped (acks for them are ignored): events after the new position are
     * delivered (again, even if they were acknowledged), events at or before it
     * count as acknowledged. Dead letters stay.
     * </pre>
     */
    public void seekGroup(wechat.qr.v1.ConsumerGroups.SeekGroupRequest request,
        io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.SeekGroupResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getSeekGroupMethod(), responseObserver);
    }

    /**
     * <pre>
     * Joins a group as a member: events go out, acknowledgements and deadline
     * changes come in (the shape of Pub/Sub's StreamingPull). The first request
     * names the group; every request may carry acks, extensions and nacks. The
     * member holds at most the group's `max_unacked_per_member` unacknowledged
     * events. When the stream ends, every event the member still holds goes to
     * the others at once.
     * </pre>
     */
    public io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.ConsumeGroupRequest> consumeGroup(
        io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.ConsumeGroupResponse> responseObserver) {
      return io.grpc.stub.ServerCalls.asyncUnimplementedStreamingCall(getConsumeGroupMethod(), responseObserver);
    }

    /**
     * <pre>
     * Joins a group as a member that acknowledges with AckGroupEvents: the
     * server-streaming form, for callers that cannot stream both ways
     * (gRPC-Web).
     * </pre>
     */
    public void receiveGroup(wechat.qr.v1.ConsumerGroups.ReceiveGroupRequest request,
        io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.ReceiveGroupResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getReceiveGroupMethod(), responseObserver);
    }

    /**
     * <pre>
     * Acknowledges, extends or returns (nacks) events of a group; returns once
     * the acknowledgements are durable.
     * </pre>
     */
    public void ackGroupEvents(wechat.qr.v1.ConsumerGroups.AckGroupEventsRequest request,
        io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.AckGroupEventsResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getAckGroupEventsMethod(), responseObserver);
    }

    /**
     * <pre>
     * The dead letters of a group, oldest first.
     * </pre>
     */
    public void listDeadLetters(wechat.qr.v1.ConsumerGroups.ListDeadLettersRequest request,
        io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.ListDeadLettersResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getListDeadLettersMethod(), responseObserver);
    }

    /**
     * <pre>
     * Puts dead letters back into the group: they are delivered again, their
     * delivery count starting over.
     * </pre>
     */
    public void replayDeadLetters(wechat.qr.v1.ConsumerGroups.ReplayDeadLettersRequest request,
        io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.ReplayDeadLettersResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getReplayDeadLettersMethod(), responseObserver);
    }

    @java.lang.Override public final io.grpc.ServerServiceDefinition bindService() {
      return io.grpc.ServerServiceDefinition.builder(getServiceDescriptor())
          .addMethod(
            getCreateGroupMethod(),
            io.grpc.stub.ServerCalls.asyncUnaryCall(
              new MethodHandlers<
                wechat.qr.v1.ConsumerGroups.CreateGroupRequest,
                wechat.qr.v1.ConsumerGroups.CreateGroupResponse>(
                  this, METHODID_CREATE_GROUP)))
          .addMethod(
            getListGroupsMethod(),
            io.grpc.stub.ServerCalls.asyncUnaryCall(
              new MethodHandlers<
                wechat.qr.v1.ConsumerGroups.ListGroupsRequest,
                wechat.qr.v1.ConsumerGroups.ListGroupsResponse>(
                  this, METHODID_LIST_GROUPS)))
          .addMethod(
            getDeleteGroupMethod(),
            io.grpc.stub.ServerCalls.asyncUnaryCall(
              new MethodHandlers<
                wechat.qr.v1.ConsumerGroups.DeleteGroupRequest,
                wechat.qr.v1.ConsumerGroups.DeleteGroupResponse>(
                  this, METHODID_DELETE_GROUP)))
          .addMethod(
            getSeekGroupMethod(),
            io.grpc.stub.ServerCalls.asyncUnaryCall(
              new MethodHandlers<
                wechat.qr.v1.ConsumerGroups.SeekGroupRequest,
                wechat.qr.v1.ConsumerGroups.SeekGroupResponse>(
                  this, METHODID_SEEK_GROUP)))
          .addMethod(
            getConsumeGroupMethod(),
            io.grpc.stub.ServerCalls.asyncBidiStreamingCall(
              new MethodHandlers<
                wechat.qr.v1.ConsumerGroups.ConsumeGroupRequest,
                wechat.qr.v1.ConsumerGroups.ConsumeGroupResponse>(
                  this, METHODID_CONSUME_GROUP)))
          .addMethod(
            getReceiveGroupMethod(),
            io.grpc.stub.ServerCalls.asyncServerStreamingCall(
              new MethodHandlers<
                wechat.qr.v1.ConsumerGroups.ReceiveGroupRequest,
                wechat.qr.v1.ConsumerGroups.ReceiveGroupResponse>(
                  this, METHODID_RECEIVE_GROUP)))
          .addMethod(
            getAckGroupEventsMethod(),
            io.grpc.stub.ServerCalls.asyncUnaryCall(
              new MethodHandlers<
                wechat.qr.v1.ConsumerGroups.AckGroupEventsRequest,
                wechat.qr.v1.ConsumerGroups.AckGroupEventsResponse>(
                  this, METHODID_ACK_GROUP_EVENTS)))
          .addMethod(
            getListDeadLettersMethod(),
            io.grpc.stub.ServerCalls.asyncUnaryCall(
              new MethodHandlers<
                wechat.qr.v1.ConsumerGroups.ListDeadLettersRequest,
                wechat.qr.v1.ConsumerGroups.ListDeadLettersResponse>(
                  this, METHODID_LIST_DEAD_LETTERS)))
          .addMethod(
            getReplayDeadLettersMethod(),
            io.grpc.stub.ServerCalls.asyncUnaryCall(
              new MethodHandlers<
                wechat.qr.v1.ConsumerGroups.ReplayDeadLettersRequest,
                wechat.qr.v1.ConsumerGroups.ReplayDeadLettersResponse>(
                  this, METHODID_REPLAY_DEAD_LETTERS)))
          .build();
    }
  }

  /**
   * <pre>
   * ConsumerGroupService creates groups, serves their members, and lets ops see
   * and move them. Groups are scoped by account (AppID): a client of the
   * `[[clients]]` list allowed one account cannot create, join or read a group of
   * another (PERMISSION_DENIED).
   * Errors: INVALID_ARGUMENT names the field first; an unknown group is
   * NOT_FOUND; creating a group that exists is ALREADY_EXISTS.
   * </pre>
   */
  public static final class ConsumerGroupServiceStub extends io.grpc.stub.AbstractAsyncStub<ConsumerGroupServiceStub> {
    private ConsumerGroupServiceStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected ConsumerGroupServiceStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new ConsumerGroupServiceStub(channel, callOptions);
    }

    /**
     * <pre>
     * Creates a group. Its filter, ack deadline, dead-letter threshold and flow
     * control are fixed at creation. An account has at most the service's
     * WECHAT_QR_MAX_GROUPS_PER_ACCOUNT groups (100 by default; with Redis, in the
     * whole deployment): one more is RESOURCE_EXHAUSTED (reason TOO_MANY_GROUPS)
     * and nothing is stored, until a group is deleted.
     * Replicas may all call it as they start: one creates the group, the others
     * get ALREADY_EXISTS, which is answered only once that group can be joined.
     * </pre>
     */
    public void createGroup(wechat.qr.v1.ConsumerGroups.CreateGroupRequest request,
        io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.CreateGroupResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getCreateGroupMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Lists the groups of the accounts the caller may see, with lag, pending
     * count and members.
     * </pre>
     */
    public void listGroups(wechat.qr.v1.ConsumerGroups.ListGroupsRequest request,
        io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.ListGroupsResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getListGroupsMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Deletes a group: its position, pending events and dead letters go; its
     * members' streams end with NOT_FOUND.
     * </pre>
     */
    public void deleteGroup(wechat.qr.v1.ConsumerGroups.DeleteGroupRequest request,
        io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.DeleteGroupResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getDeleteGroupMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Moves a group's position to a cursor or a time. Every pending delivery is
     * dropped (acks for them are ignored): events after the new position are
     * delivered (again, even if they were acknowledged), events at or before it
     * count as acknowledged. Dead letters stay.
     * </pre>
     */
    public void seekGroup(wechat.qr.v1.ConsumerGroups.SeekGroupRequest request,
        io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.SeekGroupResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getSeekGroupMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Joins a group as a member: events go out, acknowledgements and deadline
     * changes come in (the shape of Pub/Sub's StreamingPull). The first request
     * names the group; every request may carry acks, extensions and nacks. The
     * member holds at most the group's `max_unacked_per_member` unacknowledged
     * events. When the stream ends, every event the member still holds goes to
     * the others at once.
     * </pre>
     */
    public io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.ConsumeGroupRequest> consumeGroup(
        io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.ConsumeGroupResponse> responseObserver) {
      return io.grpc.stub.ClientCalls.asyncBidiStreamingCall(
          getChannel().newCall(getConsumeGroupMethod(), getCallOptions()), responseObserver);
    }

    /**
     * <pre>
     * Joins a group as a member that acknowledges with AckGroupEvents: the
     * server-streaming form, for callers that cannot stream both ways
     * (gRPC-Web).
     * </pre>
     */
    public void receiveGroup(wechat.qr.v1.ConsumerGroups.ReceiveGroupRequest request,
        io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.ReceiveGroupResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncServerStreamingCall(
          getChannel().newCall(getReceiveGroupMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Acknowledges, extends or returns (nacks) events of a group; returns once
     * the acknowledgements are durable.
     * </pre>
     */
    public void ackGroupEvents(wechat.qr.v1.ConsumerGroups.AckGroupEventsRequest request,
        io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.AckGroupEventsResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getAckGroupEventsMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * The dead letters of a group, oldest first.
     * </pre>
     */
    public void listDeadLetters(wechat.qr.v1.ConsumerGroups.ListDeadLettersRequest request,
        io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.ListDeadLettersResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getListDeadLettersMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Puts dead letters back into the group: they are delivered again, their
     * delivery count starting over.
     * </pre>
     */
    public void replayDeadLetters(wechat.qr.v1.ConsumerGroups.ReplayDeadLettersRequest request,
        io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.ReplayDeadLettersResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getReplayDeadLettersMethod(), getCallOptions()), request, responseObserver);
    }
  }

  /**
   * <pre>
   * ConsumerGroupService creates groups, serves their members, and lets ops see
   * and move them. Groups are scoped by account (AppID): a client of the
   * `[[clients]]` list allowed one account cannot create, join or read a group of
   * another (PERMISSION_DENIED).
   * Errors: INVALID_ARGUMENT names the field first; an unknown group is
   * NOT_FOUND; creating a group that exists is ALREADY_EXISTS.
   * </pre>
   */
  public static final class ConsumerGroupServiceBlockingStub extends io.grpc.stub.AbstractBlockingStub<ConsumerGroupServiceBlockingStub> {
    private ConsumerGroupServiceBlockingStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected ConsumerGroupServiceBlockingStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new ConsumerGroupServiceBlockingStub(channel, callOptions);
    }

    /**
     * <pre>
     * Creates a group. Its filter, ack deadline, dead-letter threshold and flow
     * control are fixed at creation. An account has at most the service's
     * WECHAT_QR_MAX_GROUPS_PER_ACCOUNT groups (100 by default; with Redis, in the
     * whole deployment): one more is RESOURCE_EXHAUSTED (reason TOO_MANY_GROUPS)
     * and nothing is stored, until a group is deleted.
     * Replicas may all call it as they start: one creates the group, the others
     * get ALREADY_EXISTS, which is answered only once that group can be joined.
     * </pre>
     */
    public wechat.qr.v1.ConsumerGroups.CreateGroupResponse createGroup(wechat.qr.v1.ConsumerGroups.CreateGroupRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getCreateGroupMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Lists the groups of the accounts the caller may see, with lag, pending
     * count and members.
     * </pre>
     */
    public wechat.qr.v1.ConsumerGroups.ListGroupsResponse listGroups(wechat.qr.v1.ConsumerGroups.ListGroupsRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getListGroupsMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Deletes a group: its position, pending events and dead letters go; its
     * members' streams end with NOT_FOUND.
     * </pre>
     */
    public wechat.qr.v1.ConsumerGroups.DeleteGroupResponse deleteGroup(wechat.qr.v1.ConsumerGroups.DeleteGroupRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getDeleteGroupMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Moves a group's position to a cursor or a time. Every pending delivery is
     * dropped (acks for them are ignored): events after the new position are
     * delivered (again, even if they were acknowledged), events at or before it
     * count as acknowledged. Dead letters stay.
     * </pre>
     */
    public wechat.qr.v1.ConsumerGroups.SeekGroupResponse seekGroup(wechat.qr.v1.ConsumerGroups.SeekGroupRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getSeekGroupMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Joins a group as a member that acknowledges with AckGroupEvents: the
     * server-streaming form, for callers that cannot stream both ways
     * (gRPC-Web).
     * </pre>
     */
    public java.util.Iterator<wechat.qr.v1.ConsumerGroups.ReceiveGroupResponse> receiveGroup(
        wechat.qr.v1.ConsumerGroups.ReceiveGroupRequest request) {
      return io.grpc.stub.ClientCalls.blockingServerStreamingCall(
          getChannel(), getReceiveGroupMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Acknowledges, extends or returns (nacks) events of a group; returns once
     * the acknowledgements are durable.
     * </pre>
     */
    public wechat.qr.v1.ConsumerGroups.AckGroupEventsResponse ackGroupEvents(wechat.qr.v1.ConsumerGroups.AckGroupEventsRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getAckGroupEventsMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * The dead letters of a group, oldest first.
     * </pre>
     */
    public wechat.qr.v1.ConsumerGroups.ListDeadLettersResponse listDeadLetters(wechat.qr.v1.ConsumerGroups.ListDeadLettersRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getListDeadLettersMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Puts dead letters back into the group: they are delivered again, their
     * delivery count starting over.
     * </pre>
     */
    public wechat.qr.v1.ConsumerGroups.ReplayDeadLettersResponse replayDeadLetters(wechat.qr.v1.ConsumerGroups.ReplayDeadLettersRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getReplayDeadLettersMethod(), getCallOptions(), request);
    }
  }

  /**
   * <pre>
   * ConsumerGroupService creates groups, serves their members, and lets ops see
   * and move them. Groups are scoped by account (AppID): a client of the
   * `[[clients]]` list allowed one account cannot create, join or read a group of
   * another (PERMISSION_DENIED).
   * Errors: INVALID_ARGUMENT names the field first; an unknown group is
   * NOT_FOUND; creating a group that exists is ALREADY_EXISTS.
   * </pre>
   */
  public static final class ConsumerGroupServiceFutureStub extends io.grpc.stub.AbstractFutureStub<ConsumerGroupServiceFutureStub> {
    private ConsumerGroupServiceFutureStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected ConsumerGroupServiceFutureStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new ConsumerGroupServiceFutureStub(channel, callOptions);
    }

    /**
     * <pre>
     * Creates a group. Its filter, ack deadline, dead-letter threshold and flow
     * control are fixed at creation. An account has at most the service's
     * WECHAT_QR_MAX_GROUPS_PER_ACCOUNT groups (100 by default; with Redis, in the
     * whole deployment): one more is RESOURCE_EXHAUSTED (reason TOO_MANY_GROUPS)
     * and nothing is stored, until a group is deleted.
     * Replicas may all call it as they start: one creates the group, the others
     * get ALREADY_EXISTS, which is answered only once that group can be joined.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<wechat.qr.v1.ConsumerGroups.CreateGroupResponse> createGroup(
        wechat.qr.v1.ConsumerGroups.CreateGroupRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getCreateGroupMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Lists the groups of the accounts the caller may see, with lag, pending
     * count and members.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<wechat.qr.v1.ConsumerGroups.ListGroupsResponse> listGroups(
        wechat.qr.v1.ConsumerGroups.ListGroupsRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getListGroupsMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Deletes a group: its position, pending events and dead letters go; its
     * members' streams end with NOT_FOUND.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<wechat.qr.v1.ConsumerGroups.DeleteGroupResponse> deleteGroup(
        wechat.qr.v1.ConsumerGroups.DeleteGroupRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getDeleteGroupMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Moves a group's position to a cursor or a time. Every pending delivery is
     * dropped (acks for them are ignored): events after the new position are
     * delivered (again, even if they were acknowledged), events at or before it
     * count as acknowledged. Dead letters stay.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<wechat.qr.v1.ConsumerGroups.SeekGroupResponse> seekGroup(
        wechat.qr.v1.ConsumerGroups.SeekGroupRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getSeekGroupMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Acknowledges, extends or returns (nacks) events of a group; returns once
     * the acknowledgements are durable.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<wechat.qr.v1.ConsumerGroups.AckGroupEventsResponse> ackGroupEvents(
        wechat.qr.v1.ConsumerGroups.AckGroupEventsRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getAckGroupEventsMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * The dead letters of a group, oldest first.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<wechat.qr.v1.ConsumerGroups.ListDeadLettersResponse> listDeadLetters(
        wechat.qr.v1.ConsumerGroups.ListDeadLettersRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getListDeadLettersMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Puts dead letters back into the group: they are delivered again, their
     * delivery count starting over.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<wechat.qr.v1.ConsumerGroups.ReplayDeadLettersResponse> replayDeadLetters(
        wechat.qr.v1.ConsumerGroups.ReplayDeadLettersRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getReplayDeadLettersMethod(), getCallOptions()), request);
    }
  }

  private static final int METHODID_CREATE_GROUP = 0;
  private static final int METHODID_LIST_GROUPS = 1;
  private static final int METHODID_DELETE_GROUP = 2;
  private static final int METHODID_SEEK_GROUP = 3;
  private static final int METHODID_RECEIVE_GROUP = 4;
  private static final int METHODID_ACK_GROUP_EVENTS = 5;
  private static final int METHODID_LIST_DEAD_LETTERS = 6;
  private static final int METHODID_REPLAY_DEAD_LETTERS = 7;
  private static final int METHODID_CONSUME_GROUP = 8;

  private static final class MethodHandlers<Req, Resp> implements
      io.grpc.stub.ServerCalls.UnaryMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.ServerStreamingMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.ClientStreamingMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.BidiStreamingMethod<Req, Resp> {
    private final ConsumerGroupServiceImplBase serviceImpl;
    private final int methodId;

    MethodHandlers(ConsumerGroupServiceImplBase serviceImpl, int methodId) {
      this.serviceImpl = serviceImpl;
      this.methodId = methodId;
    }

    @java.lang.Override
    @java.lang.SuppressWarnings("unchecked")
    public void invoke(Req request, io.grpc.stub.StreamObserver<Resp> responseObserver) {
      switch (methodId) {
        case METHODID_CREATE_GROUP:
          serviceImpl.createGroup((wechat.qr.v1.ConsumerGroups.CreateGroupRequest) request,
              (io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.CreateGroupResponse>) responseObserver);
          break;
        case METHODID_LIST_GROUPS:
          serviceImpl.listGroups((wechat.qr.v1.ConsumerGroups.ListGroupsRequest) request,
              (io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.ListGroupsResponse>) responseObserver);
          break;
        case METHODID_DELETE_GROUP:
          serviceImpl.deleteGroup((wechat.qr.v1.ConsumerGroups.DeleteGroupRequest) request,
              (io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.DeleteGroupResponse>) responseObserver);
          break;
        case METHODID_SEEK_GROUP:
          serviceImpl.seekGroup((wechat.qr.v1.ConsumerGroups.SeekGroupRequest) request,
              (io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.SeekGroupResponse>) responseObserver);
          break;
        case METHODID_RECEIVE_GROUP:
          serviceImpl.receiveGroup((wechat.qr.v1.ConsumerGroups.ReceiveGroupRequest) request,
              (io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.ReceiveGroupResponse>) responseObserver);
          break;
        case METHODID_ACK_GROUP_EVENTS:
          serviceImpl.ackGroupEvents((wechat.qr.v1.ConsumerGroups.AckGroupEventsRequest) request,
              (io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.AckGroupEventsResponse>) responseObserver);
          break;
        case METHODID_LIST_DEAD_LETTERS:
          serviceImpl.listDeadLetters((wechat.qr.v1.ConsumerGroups.ListDeadLettersRequest) request,
              (io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.ListDeadLettersResponse>) responseObserver);
          break;
        case METHODID_REPLAY_DEAD_LETTERS:
          serviceImpl.replayDeadLetters((wechat.qr.v1.ConsumerGroups.ReplayDeadLettersRequest) request,
              (io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.ReplayDeadLettersResponse>) responseObserver);
          break;
        default:
          throw new AssertionError();
      }
    }

    @java.lang.Override
    @java.lang.SuppressWarnings("unchecked")
    public io.grpc.stub.StreamObserver<Req> invoke(
        io.grpc.stub.StreamObserver<Resp> responseObserver) {
      switch (methodId) {
        case METHODID_CONSUME_GROUP:
          return (io.grpc.stub.StreamObserver<Req>) serviceImpl.consumeGroup(
              (io.grpc.stub.StreamObserver<wechat.qr.v1.ConsumerGroups.ConsumeGroupResponse>) responseObserver);
        default:
          throw new AssertionError();
      }
    }
  }

  private static abstract class ConsumerGroupServiceBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoFileDescriptorSupplier, io.grpc.protobuf.ProtoServiceDescriptorSupplier {
    ConsumerGroupServiceBaseDescriptorSupplier() {}

    @java.lang.Override
    public com.google.protobuf.Descriptors.FileDescriptor getFileDescriptor() {
      return wechat.qr.v1.ConsumerGroups.getDescriptor();
    }

    @java.lang.Override
    public com.google.protobuf.Descriptors.ServiceDescriptor getServiceDescriptor() {
      return getFileDescriptor().findServiceByName("ConsumerGroupService");
    }
  }

  private static final class ConsumerGroupServiceFileDescriptorSupplier
      extends ConsumerGroupServiceBaseDescriptorSupplier {
    ConsumerGroupServiceFileDescriptorSupplier() {}
  }

  private static final class ConsumerGroupServiceMethodDescriptorSupplier
      extends ConsumerGroupServiceBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoMethodDescriptorSupplier {
    private final String methodName;

    ConsumerGroupServiceMethodDescriptorSupplier(String methodName) {
      this.methodName = methodName;
    }

    @java.lang.Override
    public com.google.protobuf.Descriptors.MethodDescriptor getMethodDescriptor() {
      return getServiceDescriptor().findMethodByName(methodName);
    }
  }

  private static volatile io.grpc.ServiceDescriptor serviceDescriptor;

  public static io.grpc.ServiceDescriptor getServiceDescriptor() {
    io.grpc.ServiceDescriptor result = serviceDescriptor;
    if (result == null) {
      synchronized (ConsumerGroupServiceGrpc.class) {
        result = serviceDescriptor;
        if (result == null) {
          serviceDescriptor = result = io.grpc.ServiceDescriptor.newBuilder(SERVICE_NAME)
              .setSchemaDescriptor(new ConsumerGroupServiceFileDescriptorSupplier())
              .addMethod(getCreateGroupMethod())
              .addMethod(getListGroupsMethod())
              .addMethod(getDeleteGroupMethod())
              .addMethod(getSeekGroupMethod())
              .addMethod(getConsumeGroupMethod())
              .addMethod(getReceiveGroupMethod())
              .addMethod(getAckGroupEventsMethod())
              .addMethod(getListDeadLettersMethod())
              .addMethod(getReplayDeadLettersMethod())
              .build();
        }
      }
    }
    return result;
  }
}
