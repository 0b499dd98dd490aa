// Create or update SCRAM-SHA-512 users through the Admin API (scripts/kafka-up runs it with the
// broker's own jars, as a single-file source program: no extra jar to fetch).
// Usage: java -cp 'LIBS/*' kafka-scram-users.java BOOTSTRAP < lines of "USER PASSWORD"
// (passwords on stdin, so they never show in a process list).

import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.Scanner;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;

public class KafkaScramUsers {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        List<UserScramCredentialAlteration> users = new ArrayList<>();
        Scanner in = new Scanner(System.in);
        while (in.hasNext()) {
            String user = in.next();
            String password = in.next();
            ScramCredentialInfo info = new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192);
            users.add(new UserScramCredentialUpsertion(user, info, password));
        }
        try (Admin admin = Admin.create(props)) {
            admin.alterUserScramCredentials(users).all().get();
        }
    }
}
