package wechat.qr.v1;

import static io.grpc.MethodDescriptor.generateFullMethodName;

/**
 * <pre>
 * QrService wraps WeChat's `qrcode/create` and `showqrcode` APIs and the scan
 * events WeChat pushes to the account's server URL.
 * Errors: invalid requests answer INVALID_ARGUMENT with the offending field
 * name first in the message (for example `scene_id: ...`), before any call to
 * WeChat. Upstream WeChat errors keep their `errcode` in the message:
 * 45009/45011 (quota) -&gt; RESOURCE_EXHAUSTED; 40013/40125/40164/48001
 * (configuration, permission) -&gt; FAILED_PRECONDITION; -1 (busy) and an
 * unreachable WeChat -&gt; UNAVAILABLE.
 * </pre>
 */
@javax.annotation.Generated(
    value = "by gRPC proto compiler",
    comments = "Source: wechat/qr/v1/qr_service.proto")
@io.grpc.stub.annotations.GrpcGenerated
public final class QrServiceGrpc {

  private QrServiceGrpc() {}

  public static final String SERVICE_NAME = "wechat.qr.v1.QrService";

  // Static method descriptors that strictly reflect the proto.
  private static volatile io.grpc.MethodDescriptor<wechat.qr.v1.QrServiceOuterClass.CreateTicketRequest,
      wechat.qr.v1.QrServiceOuterClass.CreateTicketResponse> getCreateTicketMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "CreateTicket",
      requestType = wechat.qr.v1.QrServiceOuterClass.CreateTicketRequest.class,
      responseType = wechat.qr.v1.QrServiceOuterClass.CreateTicketResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<wechat.qr.v1.QrServiceOuterClass.CreateTicketRequest,
      wechat.qr.v1.QrServiceOuterClass.CreateTicketResponse> getCreateTicketMethod() {
    io.grpc.MethodDescriptor<wechat.qr.v1.QrServiceOuterClass.CreateTicketRequest, wechat.qr.v1.QrServiceOuterClass.CreateTicketResponse> getCreateTicketMethod;
    if ((getCreateTicketMethod = QrServiceGrpc.getCreateTicketMethod) == null) {
      synchronized (QrServiceGrpc.class) {
        if ((getCreateTicketMethod = QrServiceGrpc.getCreateTicketMethod) == null) {
          QrServiceGrpc.getCreateTicketMethod = getCreateTicketMethod =
              io.grpc.MethodDescriptor.<wechat.qr.v1.QrServiceOuterClass.CreateTicketRequest, wechat.qr.v1.QrServiceOuterClass.CreateTicketResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "CreateTicket"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  wechat.qr.v1.QrServiceOuterClass.CreateTicketRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  wechat.qr.v1.QrServiceOuterClass.CreateTicketResponse.getDefaultInstance()))
              .setSchemaDescriptor(new QrServiceMethodDescriptorSupplier("CreateTicket"))
              .build();
        }
      }
    }
    return getCreateTicketMethod;
  }

  private static volatile io.grpc.MethodDescriptor<wechat.qr.v1.QrServiceOuterClass.GetImageRequest,
      wechat.qr.v1.QrServiceOuterClass.GetImageResponse> getGetImageMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "GetImage",
      requestType = wechat.qr.v1.QrServiceOuterClass.GetImageRequest.class,
      responseType = wechat.qr.v1.QrServiceOuterClass.GetImageResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<wechat.qr.v1.QrServiceOuterClass.GetImageRequest,
      wechat.qr.v1.QrServiceOuterClass.GetImageResponse> getGetImageMethod() {
    io.grpc.MethodDescriptor<wechat.qr.v1.QrServiceOuterClass.GetImageRequest, wechat.qr.v1.QrServiceOuterClass.GetImageResponse> getGetImageMethod;
    if ((getGetImageMethod = QrServiceGrpc.getGetImageMethod) == null) {
      synchronized (QrServiceGrpc.class) {
        if ((getGetImageMethod = QrServiceGrpc.getGetImageMethod) == null) {
          QrServiceGrpc.getGetImageMethod = getGetImageMethod =
              io.grpc.MethodDescriptor.<wechat.qr.v1.QrServiceOuterClass.GetImageRequest, wechat.qr.v1.QrServiceOuterClass.GetImageResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "GetImage"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  wechat.qr.v1.QrServiceOuterClass.GetImageRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  wechat.qr.v1.QrServiceOuterClass.GetImageResponse.getDefaultInstance()))
              .setSchemaDescriptor(new QrServiceMethodDescriptorSupplier("GetImage"))
              .build();
        }
      }
    }
    return getGetImageMethod;
  }

  private static volatile io.grpc.MethodDescriptor<wechat.qr.v1.QrServiceOuterClass.StreamEventsRequest,
      wechat.qr.v1.QrServiceOuterClass.StreamEventsResponse> getStreamEventsMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "StreamEvents",
      requestType = wechat.qr.v1.QrServiceOuterClass.StreamEventsRequest.class,
      responseType = wechat.qr.v1.QrServiceOuterClass.StreamEventsResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.SERVER_STREAMING)
  public static io.grpc.MethodDescriptor<wechat.qr.v1.QrServiceOuterClass.StreamEventsRequest,
      wechat.qr.v1.QrServiceOuterClass.StreamEventsResponse> getStreamEventsMethod() {
    io.grpc.MethodDescriptor<wechat.qr.v1.QrServiceOuterClass.StreamEventsRequest, wechat.qr.v1.QrServiceOuterClass.StreamEventsResponse> getStreamEventsMethod;
    if ((getStreamEventsMethod = QrServiceGrpc.getStreamEventsMethod) == null) {
      synchronized (QrServiceGrpc.class) {
        if ((getStreamEventsMethod = QrServiceGrpc.getStreamEventsMethod) == null) {
          QrServiceGrpc.getStreamEventsMethod = getStreamEventsMethod =
              io.grpc.MethodDescriptor.<wechat.qr.v1.QrServiceOuterClass.StreamEventsRequest, wechat.qr.v1.QrServiceOuterClass.StreamEventsResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.SERVER_STREAMING)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "StreamEvents"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  wechat.qr.v1.QrServiceOuterClass.StreamEventsRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  wechat.qr.v1.QrServiceOuterClass.StreamEventsResponse.getDefaultInstance()))
              .setSchemaDescriptor(new QrServiceMethodDescriptorSupplier("StreamEvents"))
              .build();
        }
      }
    }
    return getStreamEventsMethod;
  }

  /**
   * Creates a new async stub that supports all call types for the service
   */
  public static QrServiceStub newStub(io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<QrServiceStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<QrServiceStub>() {
        @java.lang.Override
        public QrServiceStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new QrServiceStub(channel, callOptions);
        }
      };
    return QrServiceStub.newStub(factory, channel);
  }

  /**
   * Creates a new blocking-style stub that supports unary and streaming output calls on the service
   */
  public static QrServiceBlockingStub newBlockingStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<QrServiceBlockingStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<QrServiceBlockingStub>() {
        @java.lang.Override
        public QrServiceBlockingStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new QrServiceBlockingStub(channel, callOptions);
        }
      };
    return QrServiceBlockingStub.newStub(factory, channel);
  }

  /**
   * Creates a new ListenableFuture-style stub that supports unary calls on the service
   */
  public static QrServiceFutureStub newFutureStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<QrServiceFutureStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<QrServiceFutureStub>() {
        @java.lang.Override
        public QrServiceFutureStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new QrServiceFutureStub(channel, callOptions);
        }
      };
    return QrServiceFutureStub.newStub(factory, channel);
  }

  /**
   * <pre>
   * QrService wraps WeChat's `qrcode/create` and `showqrcode` APIs and the scan
   * events WeChat pushes to the account's server URL.
   * Errors: invalid requests answer INVALID_ARGUMENT with the offending field
   * name first in the message (for example `scene_id: ...`), before any call to
   * WeChat. Upstream WeChat errors keep their `errcode` in the message:
   * 45009/45011 (quota) -&gt; RESOURCE_EXHAUSTED; 40013/40125/40164/48001
   * (configuration, permission) -&gt; FAILED_PRECONDITION; -1 (busy) and an
   * unreachable WeChat -&gt; UNAVAILABLE.
   * </pre>
   */
  public static abstract class QrServiceImplBase implements io.grpc.BindableService {

    /**
     * <pre>
     * Creates a QR ticket for a scene. The four WeChat kinds are chosen by the
     * request: temporary or permanent, integer (`scene_id`) or string
     * (`scene_str`) scene. Permanent codes are scarce (100,000 per account,
     * ever); spend them deliberately.
     * </pre>
     */
    public void createTicket(wechat.qr.v1.QrServiceOuterClass.CreateTicketRequest request,
        io.grpc.stub.StreamObserver<wechat.qr.v1.QrServiceOuterClass.CreateTicketResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getCreateTicketMethod(), responseObserver);
    }

    /**
     * <pre>
     * Returns the QR image (a JPEG) for a ticket, served from a cache: the
     * image of a ticket never changes while it lives. Unknown or expired tickets
     * answer NOT_FOUND. With `url_only`, returns just WeChat's image URL and
     * downloads nothing.
     * </pre>
     */
    public void getImage(wechat.qr.v1.QrServiceOuterClass.GetImageRequest request,
        io.grpc.stub.StreamObserver<wechat.qr.v1.QrServiceOuterClass.GetImageResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getGetImageMethod(), responseObserver);
    }

    /**
     * <pre>
     * Streams scan events as WeChat pushes them, filtered by the request.
     * Contract: every event accepted by the webhook after the stream started is
     * delivered once, in the order the webhook accepted them, to every stream
     * whose filter matches. Each response carries an opaque `cursor`; a client
     * that reconnects with `resume_after` set to the last cursor it processed
     * gets the retained events after it (matching its filter) and then continues
     * live, with no gap and no duplicate at the seam.
     * The stream ends with:
     * - OUT_OF_RANGE when `resume_after` (or a subscriber that stopped reading)
     *   fell behind the retained log; the message names the oldest cursor
     *   still held.
     * - UNAVAILABLE when the server shuts down; reconnect with `resume_after`
     *   set to the last cursor received (also in the message).
     * </pre>
     */
    public void streamEvents(wechat.qr.v1.QrServiceOuterClass.StreamEventsRequest request,
        io.grpc.stub.StreamObserver<wechat.qr.v1.QrServiceOuterClass.StreamEventsResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getStreamEventsMethod(), responseObserver);
    }

    @java.lang.Override public final io.grpc.ServerServiceDefinition bindService() {
      return io.grpc.ServerServiceDefinition.builder(getServiceDescriptor())
          .addMethod(
            getCreateTicketMethod(),
            io.grpc.stub.ServerCalls.asyncUnaryCall(
              new MethodHandlers<
                wechat.qr.v1.QrServiceOuterClass.CreateTicketRequest,
                wechat.qr.v1.QrServiceOuterClass.CreateTicketResponse>(
                  this, METHODID_CREATE_TICKET)))
          .addMethod(
            getGetImageMethod(),
            io.grpc.stub.ServerCalls.asyncUnaryCall(
              new MethodHandlers<
                wechat.qr.v1.QrServiceOuterClass.GetImageRequest,
                wechat.qr.v1.QrServiceOuterClass.GetImageResponse>(
                  this, METHODID_GET_IMAGE)))
          .addMethod(
            getStreamEventsMethod(),
            io.grpc.stub.ServerCalls.asyncServerStreamingCall(
              new MethodHandlers<
                wechat.qr.v1.QrServiceOuterClass.StreamEventsRequest,
                wechat.qr.v1.QrServiceOuterClass.StreamEventsResponse>(
                  this, METHODID_STREAM_EVENTS)))
          .build();
    }
  }

  /**
   * <pre>
   * QrService wraps WeChat's `qrcode/create` and `showqrcode` APIs and the scan
   * events WeChat pushes to the account's server URL.
   * Errors: invalid requests answer INVALID_ARGUMENT with the offending field
   * name first in the message (for example `scene_id: ...`), before any call to
   * WeChat. Upstream WeChat errors keep their `errcode` in the message:
   * 45009/45011 (quota) -&gt; RESOURCE_EXHAUSTED; 40013/40125/40164/48001
   * (configuration, permission) -&gt; FAILED_PRECONDITION; -1 (busy) and an
   * unreachable WeChat -&gt; UNAVAILABLE.
   * </pre>
   */
  public static final class QrServiceStub extends io.grpc.stub.AbstractAsyncStub<QrServiceStub> {
    private QrServiceStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected QrServiceStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new QrServiceStub(channel, callOptions);
    }

    /**
     * <pre>
     * Creates a QR ticket for a scene. The four WeChat kinds are chosen by the
     * request: temporary or permanent, integer (`scene_id`) or string
     * (`scene_str`) scene. Permanent codes are scarce (100,000 per account,
     * ever); spend them deliberately.
     * </pre>
     */
    public void createTicket(wechat.qr.v1.QrServiceOuterClass.CreateTicketRequest request,
        io.grpc.stub.StreamObserver<wechat.qr.v1.QrServiceOuterClass.CreateTicketResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getCreateTicketMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Returns the QR image (a JPEG) for a ticket, served from a cache: the
     * image of a ticket never changes while it lives. Unknown or expired tickets
     * answer NOT_FOUND. With `url_only`, returns just WeChat's image URL and
     * downloads nothing.
     * </pre>
     */
    public void getImage(wechat.qr.v1.QrServiceOuterClass.GetImageRequest request,
        io.grpc.stub.StreamObserver<wechat.qr.v1.QrServiceOuterClass.GetImageResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getGetImageMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Streams scan events as WeChat pushes them, filtered by the request.
     * Contract: every event accepted by the webhook after the stream started is
     * delivered once, in the order the webhook accepted them, to every stream
     * whose filter matches. Each response carries an opaque `cursor`; a client
     * that reconnects with `resume_after` set to the last cursor it processed
     * gets the retained events after it (matching its filter) and then continues
     * live, with no gap and no duplicate at the seam.
     * The stream ends with:
     * - OUT_OF_RANGE when `resume_after` (or a subscriber that stopped reading)
     *   fell behind the retained log; the message names the oldest cursor
     *   still held.
     * - UNAVAILABLE when the server shuts down; reconnect with `resume_after`
     *   set to the last cursor received (also in the message).
     * </pre>
     */
    public void streamEvents(wechat.qr.v1.QrServiceOuterClass.StreamEventsRequest request,
        io.grpc.stub.StreamObserver<wechat.qr.v1.QrServiceOuterClass.StreamEventsResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncServerStreamingCall(
          getChannel().newCall(getStreamEventsMethod(), getCallOptions()), request, responseObserver);
    }
  }

  /**
   * <pre>
   * QrService wraps WeChat's `qrcode/create` and `showqrcode` APIs and the scan
   * events WeChat pushes to the account's server URL.
   * Errors: invalid requests answer INVALID_ARGUMENT with the offending field
   * name first in the message (for example `scene_id: ...`), before any call to
   * WeChat. Upstream WeChat errors keep their `errcode` in the message:
   * 45009/45011 (quota) -&gt; RESOURCE_EXHAUSTED; 40013/40125/40164/48001
   * (configuration, permission) -&gt; FAILED_PRECONDITION; -1 (busy) and an
   * unreachable WeChat -&gt; UNAVAILABLE.
   * </pre>
   */
  public static final class QrServiceBlockingStub extends io.grpc.stub.AbstractBlockingStub<QrServiceBlockingStub> {
    private QrServiceBlockingStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected QrServiceBlockingStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new QrServiceBlockingStub(channel, callOptions);
    }

    /**
     * <pre>
     * Creates a QR ticket for a scene. The four WeChat kinds are chosen by the
     * request: temporary or permanent, integer (`scene_id`) or string
     * (`scene_str`) scene. Permanent codes are scarce (100,000 per account,
     * ever); spend them deliberately.
     * </pre>
     */
    public wechat.qr.v1.QrServiceOuterClass.CreateTicketResponse createTicket(wechat.qr.v1.QrServiceOuterClass.CreateTicketRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getCreateTicketMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Returns the QR image (a JPEG) for a ticket, served from a cache: the
     * image of a ticket never changes while it lives. Unknown or expired tickets
     * answer NOT_FOUND. With `url_only`, returns just WeChat's image URL and
     * downloads nothing.
     * </pre>
     */
    public wechat.qr.v1.QrServiceOuterClass.GetImageResponse getImage(wechat.qr.v1.QrServiceOuterClass.GetImageRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getGetImageMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Streams scan events as WeChat pushes them, filtered by the request.
     * Contract: every event accepted by the webhook after the stream started is
     * delivered once, in the order the webhook accepted them, to every stream
     * whose filter matches. Each response carries an opaque `cursor`; a client
     * that reconnects with `resume_after` set to the last cursor it processed
     * gets the retained events after it (matching its filter) and then continues
     * live, with no gap and no duplicate at the seam.
     * The stream ends with:
     * - OUT_OF_RANGE when `resume_after` (or a subscriber that stopped reading)
     *   fell behind the retained log; the message names the oldest cursor
     *   still held.
     * - UNAVAILABLE when the server shuts down; reconnect with `resume_after`
     *   set to the last cursor received (also in the message).
     * </pre>
     */
    public java.util.Iterator<wechat.qr.v1.QrServiceOuterClass.StreamEventsResponse> streamEvents(
        wechat.qr.v1.QrServiceOuterClass.StreamEventsRequest request) {
      return io.grpc.stub.ClientCalls.blockingServerStreamingCall(
          getChannel(), getStreamEventsMethod(), getCallOptions(), request);
    }
  }

  /**
   * <pre>
   * QrService wraps WeChat's `qrcode/create` and `showqrcode` APIs and the scan
   * events WeChat pushes to the account's server URL.
   * Errors: invalid requests answer INVALID_ARGUMENT with the offending field
   * name first in the message (for example `scene_id: ...`), before any call to
   * WeChat. Upstream WeChat errors keep their `errcode` in the message:
   * 45009/45011 (quota) -&gt; RESOURCE_EXHAUSTED; 40013/40125/40164/48001
   * (configuration, permission) -&gt; FAILED_PRECONDITION; -1 (busy) and an
   * unreachable WeChat -&gt; UNAVAILABLE.
   * </pre>
   */
  public static final class QrServiceFutureStub extends io.grpc.stub.AbstractFutureStub<QrServiceFutureStub> {
    private QrServiceFutureStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected QrServiceFutureStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new QrServiceFutureStub(channel, callOptions);
    }

    /**
     * <pre>
     * Creates a QR ticket for a scene. The four WeChat kinds are chosen by the
     * request: temporary or permanent, integer (`scene_id`) or string
     * (`scene_str`) scene. Permanent codes are scarce (100,000 per account,
     * ever); spend them deliberately.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<wechat.qr.v1.QrServiceOuterClass.CreateTicketResponse> createTicket(
        wechat.qr.v1.QrServiceOuterClass.CreateTicketRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getCreateTicketMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Returns the QR image (a JPEG) for a ticket, served from a cache: the
     * image of a ticket never changes while it lives. Unknown or expired tickets
     * answer NOT_FOUND. With `url_only`, returns just WeChat's image URL and
     * downloads nothing.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<wechat.qr.v1.QrServiceOuterClass.GetImageResponse> getImage(
        wechat.qr.v1.QrServiceOuterClass.GetImageRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getGetImageMethod(), getCallOptions()), request);
    }
  }

  private static final int METHODID_CREATE_TICKET = 0;
  private static final int METHODID_GET_IMAGE = 1;
  private static final int METHODID_STREAM_EVENTS = 2;

  private static final class MethodHandlers<Req, Resp> implements
      io.grpc.stub.ServerCalls.UnaryMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.ServerStreamingMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.ClientStreamingMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.BidiStreamingMethod<Req, Resp> {
    private final QrServiceImplBase serviceImpl;
    private final int methodId;

    MethodHandlers(QrServiceImplBase serviceImpl, int methodId) {
      this.serviceImpl = serviceImpl;
      this.methodId = methodId;
    }

    @java.lang.Override
    @java.lang.SuppressWarnings("unchecked")
    public void invoke(Req request, io.grpc.stub.StreamObserver<Resp> responseObserver) {
      switch (methodId) {
        case METHODID_CREATE_TICKET:
          serviceImpl.createTicket((wechat.qr.v1.QrServiceOuterClass.CreateTicketRequest) request,
              (io.grpc.stub.StreamObserver<wechat.qr.v1.QrServiceOuterClass.CreateTicketResponse>) responseObserver);
          break;
        case METHODID_GET_IMAGE:
          serviceImpl.getImage((wechat.qr.v1.QrServiceOuterClass.GetImageRequest) request,
              (io.grpc.stub.StreamObserver<wechat.qr.v1.QrServiceOuterClass.GetImageResponse>) responseObserver);
          break;
        case METHODID_STREAM_EVENTS:
          serviceImpl.streamEvents((wechat.qr.v1.QrServiceOuterClass.StreamEventsRequest) request,
              (io.grpc.stub.StreamObserver<wechat.qr.v1.QrServiceOuterClass.StreamEventsResponse>) responseObserver);
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

  private static abstract class QrServiceBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoFileDescriptorSupplier, io.grpc.protobuf.ProtoServiceDescriptorSupplier {
    QrServiceBaseDescriptorSupplier() {}

    @java.lang.Override
    public com.google.protobuf.Descriptors.FileDescriptor getFileDescriptor() {
      return wechat.qr.v1.QrServiceOuterClass.getDescriptor();
    }

    @java.lang.Override
    public com.google.protobuf.Descriptors.ServiceDescriptor getServiceDescriptor() {
      return getFileDescriptor().findServiceByName("QrService");
    }
  }

  private static final class QrServiceFileDescriptorSupplier
      extends QrServiceBaseDescriptorSupplier {
    QrServiceFileDescriptorSupplier() {}
  }

  private static final class QrServiceMethodDescriptorSupplier
      extends QrServiceBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoMethodDescriptorSupplier {
    private final String methodName;

    QrServiceMethodDescriptorSupplier(String methodName) {
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
      synchronized (QrServiceGrpc.class) {
        result = serviceDescriptor;
        if (result == null) {
          serviceDescriptor = result = io.grpc.ServiceDescriptor.newBuilder(SERVICE_NAME)
              .setSchemaDescriptor(new QrServiceFileDescriptorSupplier())
              .addMethod(getCreateTicketMethod())
              .addMethod(getGetImageMethod())
              .addMethod(getStreamEventsMethod())
              .build();
        }
      }
    }
    return result;
  }
}
