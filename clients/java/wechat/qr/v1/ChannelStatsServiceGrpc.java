package wechat.qr.v1;

import static io.grpc.MethodDescriptor.generateFullMethodName;

/**
 * <pre>
 * ChannelStatsService answers from statistics the service keeps as events arrive:
 * every event the webhook accepted is counted once (a push WeChat re-sends is one
 * event), also across restarts. A call sees every push acknowledged before it
 * started (it waits up to a second for the statistics to catch up; `cursor` in the
 * answer says how far they go).
 * Time: an event counts at WeChat's `CreateTime`, the moment the user acted (the
 * time it was received when `CreateTime` lies more than an hour after that).
 * Statistics are kept for `WECHAT_QR_STATS_RETAIN_DAYS` (400 by default),
 * independently of the event log's retention.
 * Errors: invalid requests answer INVALID_ARGUMENT with the offending field name
 * first in the message (for example `time_zone: ...`).
 * </pre>
 */
@javax.annotation.Generated(
    value = "by gRPC proto compiler",
    comments = "Source: wechat/qr/v1/channel_stats.proto")
@io.grpc.stub.annotations.GrpcGenerated
public final class ChannelStatsServiceGrpc {

  private ChannelStatsServiceGrpc() {}

  public static final String SERVICE_NAME = "wechat.qr.v1.ChannelStatsService";

  // Static method descriptors that strictly reflect the proto.
  private static volatile io.grpc.MethodDescriptor<wechat.qr.v1.ChannelStats.GetSceneStatsRequest,
      wechat.qr.v1.ChannelStats.GetSceneStatsResponse> getGetSceneStatsMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "GetSceneStats",
      requestType = wechat.qr.v1.ChannelStats.GetSceneStatsRequest.class,
      responseType = wechat.qr.v1.ChannelStats.GetSceneStatsResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<wechat.qr.v1.ChannelStats.GetSceneStatsRequest,
      wechat.qr.v1.ChannelStats.GetSceneStatsResponse> getGetSceneStatsMethod() {
    io.grpc.MethodDescriptor<wechat.qr.v1.ChannelStats.GetSceneStatsRequest, wechat.qr.v1.ChannelStats.GetSceneStatsResponse> getGetSceneStatsMethod;
    if ((getGetSceneStatsMethod = ChannelStatsServiceGrpc.getGetSceneStatsMethod) == null) {
      synchronized (ChannelStatsServiceGrpc.class) {
        if ((getGetSceneStatsMethod = ChannelStatsServiceGrpc.getGetSceneStatsMethod) == null) {
          ChannelStatsServiceGrpc.getGetSceneStatsMethod = getGetSceneStatsMethod =
              io.grpc.MethodDescriptor.<wechat.qr.v1.ChannelStats.GetSceneStatsRequest, wechat.qr.v1.ChannelStats.GetSceneStatsResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "GetSceneStats"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  wechat.qr.v1.ChannelStats.GetSceneStatsRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  wechat.qr.v1.ChannelStats.GetSceneStatsResponse.getDefaultInstance()))
              .setSchemaDescriptor(new ChannelStatsServiceMethodDescriptorSupplier("GetSceneStats"))
              .build();
        }
      }
    }
    return getGetSceneStatsMethod;
  }

  private static volatile io.grpc.MethodDescriptor<wechat.qr.v1.ChannelStats.ListScenesRequest,
      wechat.qr.v1.ChannelStats.ListScenesResponse> getListScenesMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "ListScenes",
      requestType = wechat.qr.v1.ChannelStats.ListScenesRequest.class,
      responseType = wechat.qr.v1.ChannelStats.ListScenesResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<wechat.qr.v1.ChannelStats.ListScenesRequest,
      wechat.qr.v1.ChannelStats.ListScenesResponse> getListScenesMethod() {
    io.grpc.MethodDescriptor<wechat.qr.v1.ChannelStats.ListScenesRequest, wechat.qr.v1.ChannelStats.ListScenesResponse> getListScenesMethod;
    if ((getListScenesMethod = ChannelStatsServiceGrpc.getListScenesMethod) == null) {
      synchronized (ChannelStatsServiceGrpc.class) {
        if ((getListScenesMethod = ChannelStatsServiceGrpc.getListScenesMethod) == null) {
          ChannelStatsServiceGrpc.getListScenesMethod = getListScenesMethod =
              io.grpc.MethodDescriptor.<wechat.qr.v1.ChannelStats.ListScenesRequest, wechat.qr.v1.ChannelStats.ListScenesResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "ListScenes"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  wechat.qr.v1.ChannelStats.ListScenesRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  wechat.qr.v1.ChannelStats.ListScenesResponse.getDefaultInstance()))
              .setSchemaDescriptor(new ChannelStatsServiceMethodDescriptorSupplier("ListScenes"))
              .build();
        }
      }
    }
    return getListScenesMethod;
  }

  /**
   * Creates a new async stub that supports all call types for the service
   */
  public static ChannelStatsServiceStub newStub(io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<ChannelStatsServiceStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<ChannelStatsServiceStub>() {
        @java.lang.Override
        public ChannelStatsServiceStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new ChannelStatsServiceStub(channel, callOptions);
        }
      };
    return ChannelStatsServiceStub.newStub(factory, channel);
  }

  /**
   * Creates a new blocking-style stub that supports unary and streaming output calls on the service
   */
  public static ChannelStatsServiceBlockingStub newBlockingStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<ChannelStatsServiceBlockingStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<ChannelStatsServiceBlockingStub>() {
        @java.lang.Override
        public ChannelStatsServiceBlockingStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new ChannelStatsServiceBlockingStub(channel, callOptions);
        }
      };
    return ChannelStatsServiceBlockingStub.newStub(factory, channel);
  }

  /**
   * Creates a new ListenableFuture-style stub that supports unary calls on the service
   */
  public static ChannelStatsServiceFutureStub newFutureStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<ChannelStatsServiceFutureStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<ChannelStatsServiceFutureStub>() {
        @java.lang.Override
        public ChannelStatsServiceFutureStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new ChannelStatsServiceFutureStub(channel, callOptions);
        }
      };
    return ChannelStatsServiceFutureStub.newStub(factory, channel);
  }

  /**
   * <pre>
   * ChannelStatsService answers from statistics the service keeps as events arrive:
   * every event the webhook accepted is counted once (a push WeChat re-sends is one
   * event), also across restarts. A call sees every push acknowledged before it
   * started (it waits up to a second for the statistics to catch up; `cursor` in the
   * answer says how far they go).
   * Time: an event counts at WeChat's `CreateTime`, the moment the user acted (the
   * time it was received when `CreateTime` lies more than an hour after that).
   * Statistics are kept for `WECHAT_QR_STATS_RETAIN_DAYS` (400 by default),
   * independently of the event log's retention.
   * Errors: invalid requests answer INVALID_ARGUMENT with the offending field name
   * first in the message (for example `time_zone: ...`).
   * </pre>
   */
  public static abstract class ChannelStatsServiceImplBase implements io.grpc.BindableService {

    /**
     * <pre>
     * Counts per scene and time bucket over a time range, plus each scene's totals
     * over the range: what a chart of new followers and scans per scene over time,
     * and a table of totals and unfollow rates, are drawn from.
     * </pre>
     */
    public void getSceneStats(wechat.qr.v1.ChannelStats.GetSceneStatsRequest request,
        io.grpc.stub.StreamObserver<wechat.qr.v1.ChannelStats.GetSceneStatsResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getGetSceneStatsMethod(), responseObserver);
    }

    /**
     * <pre>
     * Every scene the statistics know, with its lifetime totals and when it was
     * last active, in scene order, a page at a time.
     * </pre>
     */
    public void listScenes(wechat.qr.v1.ChannelStats.ListScenesRequest request,
        io.grpc.stub.StreamObserver<wechat.qr.v1.ChannelStats.ListScenesResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getListScenesMethod(), responseObserver);
    }

    @java.lang.Override public final io.grpc.ServerServiceDefinition bindService() {
      return io.grpc.ServerServiceDefinition.builder(getServiceDescriptor())
          .addMethod(
            getGetSceneStatsMethod(),
            io.grpc.stub.ServerCalls.asyncUnaryCall(
              new MethodHandlers<
                wechat.qr.v1.ChannelStats.GetSceneStatsRequest,
                wechat.qr.v1.ChannelStats.GetSceneStatsResponse>(
                  this, METHODID_GET_SCENE_STATS)))
          .addMethod(
            getListScenesMethod(),
            io.grpc.stub.ServerCalls.asyncUnaryCall(
              new MethodHandlers<
                wechat.qr.v1.ChannelStats.ListScenesRequest,
                wechat.qr.v1.ChannelStats.ListScenesResponse>(
                  this, METHODID_LIST_SCENES)))
          .build();
    }
  }

  /**
   * <pre>
   * ChannelStatsService answers from statistics the service keeps as events arrive:
   * every event the webhook accepted is counted once (a push WeChat re-sends is one
   * event), also across restarts. A call sees every push acknowledged before it
   * started (it waits up to a second for the statistics to catch up; `cursor` in the
   * answer says how far they go).
   * Time: an event counts at WeChat's `CreateTime`, the moment the user acted (the
   * time it was received when `CreateTime` lies more than an hour after that).
   * Statistics are kept for `WECHAT_QR_STATS_RETAIN_DAYS` (400 by default),
   * independently of the event log's retention.
   * Errors: invalid requests answer INVALID_ARGUMENT with the offending field name
   * first in the message (for example `time_zone: ...`).
   * </pre>
   */
  public static final class ChannelStatsServiceStub extends io.grpc.stub.AbstractAsyncStub<ChannelStatsServiceStub> {
    private ChannelStatsServiceStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected ChannelStatsServiceStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new ChannelStatsServiceStub(channel, callOptions);
    }

    /**
     * <pre>
     * Counts per scene and time bucket over a time range, plus each scene's totals
     * over the range: what a chart of new followers and scans per scene over time,
     * and a table of totals and unfollow rates, are drawn from.
     * </pre>
     */
    public void getSceneStats(wechat.qr.v1.ChannelStats.GetSceneStatsRequest request,
        io.grpc.stub.StreamObserver<wechat.qr.v1.ChannelStats.GetSceneStatsResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getGetSceneStatsMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Every scene the statistics know, with its lifetime totals and when it was
     * last active, in scene order, a page at a time.
     * </pre>
     */
    public void listScenes(wechat.qr.v1.ChannelStats.ListScenesRequest request,
        io.grpc.stub.StreamObserver<wechat.qr.v1.ChannelStats.ListScenesResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getListScenesMethod(), getCallOptions()), request, responseObserver);
    }
  }

  /**
   * <pre>
   * ChannelStatsService answers from statistics the service keeps as events arrive:
   * every event the webhook accepted is counted once (a push WeChat re-sends is one
   * event), also across restarts. A call sees every push acknowledged before it
   * started (it waits up to a second for the statistics to catch up; `cursor` in the
   * answer says how far they go).
   * Time: an event counts at WeChat's `CreateTime`, the moment the user acted (the
   * time it was received when `CreateTime` lies more than an hour after that).
   * Statistics are kept for `WECHAT_QR_STATS_RETAIN_DAYS` (400 by default),
   * independently of the event log's retention.
   * Errors: invalid requests answer INVALID_ARGUMENT with the offending field name
   * first in the message (for example `time_zone: ...`).
   * </pre>
   */
  public static final class ChannelStatsServiceBlockingStub extends io.grpc.stub.AbstractBlockingStub<ChannelStatsServiceBlockingStub> {
    private ChannelStatsServiceBlockingStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected ChannelStatsServiceBlockingStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new ChannelStatsServiceBlockingStub(channel, callOptions);
    }

    /**
     * <pre>
     * Counts per scene and time bucket over a time range, plus each scene's totals
     * over the range: what a chart of new followers and scans per scene over time,
     * and a table of totals and unfollow rates, are drawn from.
     * </pre>
     */
    public wechat.qr.v1.ChannelStats.GetSceneStatsResponse getSceneStats(wechat.qr.v1.ChannelStats.GetSceneStatsRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getGetSceneStatsMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Every scene the statistics know, with its lifetime totals and when it was
     * last active, in scene order, a page at a time.
     * </pre>
     */
    public wechat.qr.v1.ChannelStats.ListScenesResponse listScenes(wechat.qr.v1.ChannelStats.ListScenesRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getListScenesMethod(), getCallOptions(), request);
    }
  }

  /**
   * <pre>
   * ChannelStatsService answers from statistics the service keeps as events arrive:
   * every event the webhook accepted is counted once (a push WeChat re-sends is one
   * event), also across restarts. A call sees every push acknowledged before it
   * started (it waits up to a second for the statistics to catch up; `cursor` in the
   * answer says how far they go).
   * Time: an event counts at WeChat's `CreateTime`, the moment the user acted (the
   * time it was received when `CreateTime` lies more than an hour after that).
   * Statistics are kept for `WECHAT_QR_STATS_RETAIN_DAYS` (400 by default),
   * independently of the event log's retention.
   * Errors: invalid requests answer INVALID_ARGUMENT with the offending field name
   * first in the message (for example `time_zone: ...`).
   * </pre>
   */
  public static final class ChannelStatsServiceFutureStub extends io.grpc.stub.AbstractFutureStub<ChannelStatsServiceFutureStub> {
    private ChannelStatsServiceFutureStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected ChannelStatsServiceFutureStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new ChannelStatsServiceFutureStub(channel, callOptions);
    }

    /**
     * <pre>
     * Counts per scene and time bucket over a time range, plus each scene's totals
     * over the range: what a chart of new followers and scans per scene over time,
     * and a table of totals and unfollow rates, are drawn from.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<wechat.qr.v1.ChannelStats.GetSceneStatsResponse> getSceneStats(
        wechat.qr.v1.ChannelStats.GetSceneStatsRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getGetSceneStatsMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Every scene the statistics know, with its lifetime totals and when it was
     * last active, in scene order, a page at a time.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<wechat.qr.v1.ChannelStats.ListScenesResponse> listScenes(
        wechat.qr.v1.ChannelStats.ListScenesRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getListScenesMethod(), getCallOptions()), request);
    }
  }

  private static final int METHODID_GET_SCENE_STATS = 0;
  private static final int METHODID_LIST_SCENES = 1;

  private static final class MethodHandlers<Req, Resp> implements
      io.grpc.stub.ServerCalls.UnaryMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.ServerStreamingMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.ClientStreamingMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.BidiStreamingMethod<Req, Resp> {
    private final ChannelStatsServiceImplBase serviceImpl;
    private final int methodId;

    MethodHandlers(ChannelStatsServiceImplBase serviceImpl, int methodId) {
      this.serviceImpl = serviceImpl;
      this.methodId = methodId;
    }

    @java.lang.Override
    @java.lang.SuppressWarnings("unchecked")
    public void invoke(Req request, io.grpc.stub.StreamObserver<Resp> responseObserver) {
      switch (methodId) {
        case METHODID_GET_SCENE_STATS:
          serviceImpl.getSceneStats((wechat.qr.v1.ChannelStats.GetSceneStatsRequest) request,
              (io.grpc.stub.StreamObserver<wechat.qr.v1.ChannelStats.GetSceneStatsResponse>) responseObserver);
          break;
        case METHODID_LIST_SCENES:
          serviceImpl.listScenes((wechat.qr.v1.ChannelStats.ListScenesRequest) request,
              (io.grpc.stub.StreamObserver<wechat.qr.v1.ChannelStats.ListScenesResponse>) responseObserver);
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
        default:
          throw new AssertionError();
      }
    }
  }

  private static abstract class ChannelStatsServiceBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoFileDescriptorSupplier, io.grpc.protobuf.ProtoServiceDescriptorSupplier {
    ChannelStatsServiceBaseDescriptorSupplier() {}

    @java.lang.Override
    public com.google.protobuf.Descriptors.FileDescriptor getFileDescriptor() {
      return wechat.qr.v1.ChannelStats.getDescriptor();
    }

    @java.lang.Override
    public com.google.protobuf.Descriptors.ServiceDescriptor getServiceDescriptor() {
      return getFileDescriptor().findServiceByName("ChannelStatsService");
    }
  }

  private static final class ChannelStatsServiceFileDescriptorSupplier
      extends ChannelStatsServiceBaseDescriptorSupplier {
    ChannelStatsServiceFileDescriptorSupplier() {}
  }

  private static final class ChannelStatsServiceMethodDescriptorSupplier
      extends ChannelStatsServiceBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoMethodDescriptorSupplier {
    private final String methodName;

    ChannelStatsServiceMethodDescriptorSupplier(String methodName) {
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
      synchronized (ChannelStatsServiceGrpc.class) {
        result = serviceDescriptor;
        if (result == null) {
          serviceDescriptor = result = io.grpc.ServiceDescriptor.newBuilder(SERVICE_NAME)
              .setSchemaDescriptor(new ChannelStatsServiceFileDescriptorSupplier())
              .addMethod(getGetSceneStatsMethod())
              .addMethod(getListScenesMethod())
              .build();
        }
      }
    }
    return result;
  }
}
