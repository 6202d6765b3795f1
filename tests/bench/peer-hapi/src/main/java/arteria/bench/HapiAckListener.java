package arteria.bench;

import ca.uhn.hl7v2.DefaultHapiContext;
import ca.uhn.hl7v2.HL7Exception;
import ca.uhn.hl7v2.HapiContext;
import ca.uhn.hl7v2.app.HL7Service;
import ca.uhn.hl7v2.model.Message;
import ca.uhn.hl7v2.protocol.ReceivingApplication;
import ca.uhn.hl7v2.protocol.ReceivingApplicationException;
import java.io.IOException;
import java.util.Map;

/**
 * The benchmark's MLLP peer: HAPI's own server parses every message into its v2.5.1 structure
 * and answers AA, persisting nothing. It shows what an MLLP listener costs on this machine
 * without the durable write that Arteria's ACK waits for.
 *
 * <p>Usage: {@code java -cp ... arteria.bench.HapiAckListener <port>}; stops on SIGTERM.
 */
public final class HapiAckListener {
    private HapiAckListener() {}

    public static void main(String[] args) throws Exception {
        int port = args.length > 0 ? Integer.parseInt(args[0]) : 2576;
        HapiContext context = new DefaultHapiContext();
        HL7Service server = context.newServer(port, false);
        server.registerApplication("*", "*", new ReceivingApplication<Message>() {
            @Override
            public Message processMessage(Message in, Map<String, Object> metadata)
                    throws ReceivingApplicationException, HL7Exception {
                try {
                    return in.generateACK();
                } catch (IOException e) {
                    throw new HL7Exception(e);
                }
            }

            @Override
            public boolean canProcess(Message in) {
                return true;
            }
        });
        Runtime.getRuntime().addShutdownHook(new Thread(server::stopAndWait));
        server.startAndWait();
        System.out.println("HAPI MLLP listener on 127.0.0.1:" + port);
        Thread.currentThread().join();
    }
}
